"""Choose a model's strict-mode settings on TRAINING rows: the library behind
``python -m sr_engine tune-strict --model mnist-x8 --rows 200 --n 8 --steps 8``.

For each training image (MNIST rows with ``i % 500 < 400``, the first ``rows / 10`` of each digit; plates: training
renders, training fonts and strings) the kernel DDPM draws ``n`` latents once (it sees the LR image, whatever the
settings); then for each de-clip amount the flow decodes them from the de-clipped LR image
(:func:`sr_engine.projection.declip_lr`; for a model with a de-clip estimator the amount is the push beyond its
estimate), and each sample is projected onto the 8-bit slab
(:func:`sr_engine.projection.strict_project`) in the Euclidean norm and with :func:`background_weights` at each
floor, after :func:`sr_engine.projection.haar_shrink` at each shrink threshold (``--shrinks``; 0: none). Reported
per setting: single-sample SSIM against HR (the criterion), background haze
(:func:`sr_engine.metrics.background_haze`) and the share of samples that round back exactly; the flow's own
output (no projection; shrunk where the row's shrink is not 0) is a reference column. The chosen setting is the one
of highest SSIM. Evaluation rows are never read here.

``--budget`` (:func:`fidelity_budget`) asks where the tuned strict mode loses fidelity on the same training images:
the shipped sample against the flow fed the HR image's own z (a perfect kernel sampler's best draw) and its own,
unclipped y (what the de-clipped LR image stands in for).

The rows read here (the first ``rows / 10`` training digits of each class, up to :data:`TUNE_DIGITS_PER_CLASS`)
are left out of the de-clip estimator's training (``python -m sr_engine train --stage declip``), so that the
settings chosen with it are chosen on digits it has not fitted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..data import load_mnist, mnist_canvas
from ..degradation import get_degradation, make_lr
from ..engines.base import sample_seeds, to_uint8
from ..engines.registry import load_engine
from ..metrics import background_haze, ssim
from ..plates import render_plates
from ..projection import StrictSettings, rounds_back, strict_project
from .tables import markdown

log = logging.getLogger(__name__)

DECLIPS: tuple[float, ...] = (0.0, 2.0, 4.0, 8.0, 12.0, 16.0)  # grey
SHRINKS: tuple[float, ...] = (0.0,)  # grey; the default grid leaves the flow's output as decoded
FLOORS: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1)
TUNE_PLATES_SEED = 11  # training renders drawn for tuning (training fonts and strings only)
TUNE_DIGITS_PER_CLASS = 20  # the most training digits of each class tuning reads (rows <= 200)
FLOW = "flow (no projection)"
EUCLID = "uniform"


@dataclass
class TuneCell:
    ssim: float
    haze: float  # grey levels
    exact: float  # share of samples that round back (NaN for the unprojected flow)


@dataclass
class TuneResult:
    model: str
    images: int
    samples: int
    steps: int
    dark_ink: bool
    seconds: float
    # (declip, metric, shrink) -> figures
    cells: dict[tuple[float, str, float], TuneCell] = field(default_factory=dict)

    def metrics(self) -> list[str]:
        return list(dict.fromkeys(m for _, m, _ in self.cells))

    def best(self) -> StrictSettings:
        """The projected setting of highest SSIM (the unprojected flow is only a reference)."""
        (d, m, t), _ = max(((k, c) for k, c in self.cells.items() if k[1] != FLOW), key=lambda kc: kc[1].ssim)
        return StrictSettings(declip_grey=d, floor=None if m == EUCLID else float(m.split("=")[1]),
                              dark_ink=self.dark_ink, shrink_grey=t)

    def to_markdown(self) -> str:
        metrics = self.metrics()
        shrinks = list(dict.fromkeys(k[2] for k in self.cells))
        head = ["de-clip (grey)"] + (["shrink (grey)"] if shrinks != [0.0] else []) + [
            f"{m}: SSIM / haze / exact" for m in metrics]
        rows = []
        for d, t in dict.fromkeys((k[0], k[2]) for k in self.cells):
            cells = []
            for m in metrics:
                c = self.cells[(d, m, t)]
                ex = "n/a" if c.exact != c.exact else f"{100 * c.exact:.0f}%"
                cells.append(f"{c.ssim:.4f} / {c.haze:.2f} / {ex}")
            rows.append([f"{d:g}"] + ([f"{t:g}"] if shrinks != [0.0] else []) + cells)
        b = self.best()
        return (f"model {self.model}: {self.images} training images x {self.samples} samples, {self.steps} steps, "
                f"dark_ink={self.dark_ink}, {self.seconds:.0f} s; single-sample SSIM against HR / background "
                f"haze (grey) / share exact\n\n{markdown(head, rows)}\n\nchosen: de-clip {b.declip_grey:g} grey, "
                f"floor {b.floor if b.floor is not None else 'none (uniform)'}"
                + (f", shrink {b.shrink_grey:g} grey" if shrinks != [0.0] else ""))


def training_images(domain: str, scale: int, rows: int) -> np.ndarray:
    """uint8 HR training images: MNIST's first ``rows // 10`` training rows of each digit, or ``rows`` training
    plate renders."""
    if domain == "plates":
        return render_plates(rows, seed=TUNE_PLATES_SEED, split="train").images
    d = load_mnist("train", pad_to=mnist_canvas(scale))
    return d.images[tuning_rows(d.labels, rows)]


def tuning_rows(labels: np.ndarray, rows: int = 10 * TUNE_DIGITS_PER_CLASS) -> np.ndarray:
    """Indices (into the MNIST training split) of the digits tuning reads: the first ``rows // 10`` of each class
    (at most :data:`TUNE_DIGITS_PER_CLASS`, so that they stay outside the de-clip estimator's training)."""
    per = max(1, rows // 10)
    if per > TUNE_DIGITS_PER_CLASS:
        raise ValueError(f"tuning reads at most {10 * TUNE_DIGITS_PER_CLASS} digits (the de-clip estimator "
                         f"trains on the others), got rows={rows}")
    return np.concatenate([np.flatnonzero(labels == k)[:per] for k in range(10)])


@torch.no_grad()
def tune_strict(model: str, rows: int = 200, n: int = 8, steps: int = 8, declips: Sequence[float] = DECLIPS,
                floors: Sequence[float] = FLOORS, seed: int = 0, shrinks: Sequence[float] = SHRINKS) -> TuneResult:
    """Evaluate the de-clip x metric x shrink grid on training images of ``model`` (see the module docstring)."""
    eng = load_engine(model)
    if eng.domain not in ("mnist", "plates"):
        raise ValueError(f"model {model!r} has no known training domain ({eng.domain!r}); nothing to tune on")
    dark_ink = eng.domain == "plates"  # dark text on a light plate; digits are light strokes on black
    hr = training_images(eng.domain, eng.scale, rows)
    lr = make_lr(hr, eng.scale)
    deg = get_degradation(hr.shape[-2:], eng.scale, eng.kernel)
    metrics: list[tuple[str, float | None]] = [(EUCLID, None)] + [(f"floor={f:g}", float(f)) for f in floors]
    acc: dict[tuple[float, str, float], list[np.ndarray]] = {}
    t0 = time.perf_counter()
    for i, (h, y8) in enumerate(tqdm(list(zip(hr, lr)), desc=f"tune {model}", mininterval=10)):
        seeds = sample_seeds(seed + i, n)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        yb = torch.from_numpy(y8.astype(np.float32) / 255.0)[None, None].expand(n, -1, -1, -1)
        zs = eng.sample_latents(yb, gens, mode="strict", tau=1.0, steps=steps, scheduler="ddim", timesteps=None,
                                start_step=None)
        for d in declips:
            yf = torch.from_numpy(eng.flow_input(y8[None], d)).float()[None].expand(n, -1, -1, -1)
            decoded = eng.flow.inverse(yf, zs).double()
            for t in shrinks:
                x = StrictSettings(shrink_grey=t).shrink(decoded, eng.scale)
                outs = {FLOW: (to_uint8(x), float("nan"))}
                for name, floor in metrics:
                    w = None if floor is None else StrictSettings(d, floor, dark_ink).weights(x)
                    u8, _ = strict_project(deg, x, y8[None], weights=w)
                    outs[name] = (u8[:, 0], float(rounds_back(deg, u8, y8[None]).mean()))
                for name, (imgs, exact) in outs.items():
                    figs = [[ssim(s, h), background_haze(s, h, dark_ink), exact] for s in imgs]
                    acc.setdefault((d, name, float(t)), []).append(np.array(figs))
    res = TuneResult(model=model, images=len(hr), samples=n, steps=steps, dark_ink=dark_ink,
                     seconds=time.perf_counter() - t0)
    for k, v in acc.items():
        a = np.concatenate(v)
        res.cells[k] = TuneCell(ssim=float(a[:, 0].mean()), haze=float(np.nanmean(a[:, 1])),
                                exact=float(a[:, 2].mean()))
    log.info("tune-strict %s: chosen %s", model, res.best())
    return res


# ---- where strict mode's fidelity goes (the "budget") ------------------------------------------------------------
BUDGET_CASES: tuple[str, ...] = (
    "kernel DDPM z, de-clipped y (strict mode)",
    "the HR image's own z, de-clipped y",
    "kernel DDPM z, the HR image's own y",
    "the HR image's own z and y",
)


@dataclass
class BudgetResult:
    model: str
    images: int
    samples: int
    steps: int
    declip_grey: float
    seconds: float
    rows: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # case -> SSIM, haze, flow SSIM

    def to_markdown(self) -> str:
        head = ["z, y fed to the flow's inverse", "strict SSIM", "haze (grey)", "flow output SSIM (no projection)"]
        rows = [[k, f"{a:.4f}", f"{b:.2f}", f"{c:.4f}"] for k, (a, b, c) in self.rows.items()]
        return (f"model {self.model}: {self.images} training images, {self.samples} DDPM samples each at "
                f"{self.steps} steps (the HR image's own z: one decode), de-clip {self.declip_grey:g} grey, "
                f"{self.seconds:.0f} s; single-sample SSIM against HR\n\n{markdown(head, rows)}")


@torch.no_grad()
def fidelity_budget(eng, hr: np.ndarray, n: int = 8, steps: int = 8, seed: int = 0) -> BudgetResult:
    """Where a flow engine's strict samples lose fidelity, on uint8 HR images ``hr`` (N, H, W; training rows): the
    strict sample as shipped (the kernel DDPM's z, the flow fed the de-clipped LR image), then with the HR image's
    own z (``f(HR).z``: a perfect kernel sampler would draw it among others), with the HR image's own y
    (``f(HR).y``, unclipped: what the de-clipped LR image stands in for), and with both (the flow inverts exactly:
    SSIM about 1). Every decode is projected as strict mode projects it (the model's tuned metric)."""
    if eng.channels != 1:
        raise ValueError("fidelity_budget takes single-channel engines")
    st = eng.strict
    lr = make_lr(hr, eng.scale)
    deg = get_degradation(hr.shape[-2:], eng.scale, eng.kernel)
    acc: dict[str, list[np.ndarray]] = {k: [] for k in BUDGET_CASES}
    t0 = time.perf_counter()
    for i, (h, y8) in enumerate(tqdm(list(zip(hr, lr)), desc=f"budget {eng.name}", mininterval=10)):
        gens = [torch.Generator().manual_seed(int(s)) for s in sample_seeds(seed + i, n)]
        yb = torch.from_numpy(y8.astype(np.float32) / 255.0)[None, None].expand(n, -1, -1, -1)
        zs = eng.sample_latents(yb, gens, mode="strict", tau=1.0, steps=steps, scheduler="ddim", timesteps=None,
                                start_step=None)
        own = eng.flow(torch.from_numpy(h.astype(np.float32) / 255.0)[None, None])
        y_dec = torch.from_numpy(eng.flow_input(y8[None])).float()[None]
        cases = [(y_dec.expand(n, -1, -1, -1), zs), (y_dec, own.zs), (own.y.expand(n, -1, -1, -1), zs),
                 (own.y, own.zs)]
        for name, (y, z) in zip(BUDGET_CASES, cases):
            x = eng.flow.inverse(y, z).double()
            xs = st.shrink(x, eng.scale)  # as strict mode starts the projection
            u8, _ = strict_project(deg, xs, y8[None], weights=st.weights(xs))
            acc[name].append(np.array([[ssim(s, h), background_haze(s, h, st.dark_ink), ssim(f, h)]
                                       for s, f in zip(u8[:, 0], to_uint8(x))]))
    res = BudgetResult(model=eng.name, images=len(hr), samples=n, steps=steps, declip_grey=st.declip_grey,
                       seconds=time.perf_counter() - t0)
    for name, v in acc.items():
        a = np.concatenate(v)
        res.rows[name] = (float(a[:, 0].mean()), float(np.nanmean(a[:, 1])), float(a[:, 2].mean()))
    return res
