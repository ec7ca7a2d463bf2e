"""Time the slab projection against the old strict projection on one thread, for a 64-sample bank.

Run: ``python -m sr_engine.bench.projection_timing`` (``--n 64 --repeats 3``); with ``--bank mnist-x4`` it times
instead a shipped model's whole strict step on one bank, old against new (:func:`bank_step_timing`); with
``--modes mnist-x4`` a whole bank in strict mode against flow mode (:func:`mode_timing`); with ``--engines A,B``
a whole strict bank of one engine against another (:func:`engine_timing`); with ``--shrink mnist-x4`` a whole
strict bank with the model's Haar shrinkage against the same engine without it (:func:`shrink_timing`). Otherwise
it
prints, per setting, the median seconds
of :func:`sr_engine.projection.project_slab` (Euclidean and with :func:`background_weights`), of the whole
:func:`strict_project` (projection, rounding, verification) and of ``Degradation.project(method="auto")``, with
Newton steps and how many samples round back to the LR image.

Inputs: MNIST training rows (``i % 500 < 400``) at x4 (28x28) and x8 (padded to 32x32): the LR image is
``round(clip(255 D(HR)))`` and the sample ``x0`` the HR digit plus smooth Gaussian noise (std 0.1, a stand-in for
a flow sample), so that most LR constraints bind; plates: random smooth RGB 32x128 images at x4, the same way.

One run (a 2-core machine shared with other jobs, load average about 4: absolute figures are inflated and noisy):

    setting         method                        seconds  steps  exact
    mnist x4        project_slab euclidean          0.237     18     64
    mnist x4        project_slab weighted           0.118      9     64
    mnist x4        strict_project weighted         0.121      9     64
    mnist x4        Degradation.project auto        0.227     17     64
    mnist x8        project_slab euclidean          0.056     12     64
    mnist x8        project_slab weighted           0.015      6     64
    mnist x8        strict_project weighted         0.033      6     64
    mnist x8        Degradation.project auto        0.009      9     64
    plates x4 RGB   project_slab euclidean          1.220      7     64
    plates x4 RGB   project_slab weighted           0.765      8     64
    plates x4 RGB   strict_project weighted         1.224      8     64
    plates x4 RGB   Degradation.project auto        0.501     23     64

("exact": samples whose 8-bit image rounds back to the LR image; the old projection's are exact too here, but it
projects onto ``D x = Y / 255``, which excludes the true image where the LR image is clipped.)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..data import load_mnist, mnist_canvas
from ..degradation import Degradation, get_degradation, make_lr
from ..engines.base import sample_seeds
from ..engines.registry import load_engine
from ..plates import render_plates
from ..projection import background_weights, default_margin, project_slab, rounds_back, slab_bounds, strict_project


def _smooth_noise(shape: tuple[int, ...], gen: torch.Generator, std: float = 0.1) -> torch.Tensor:
    h, w = shape[-2:]
    coarse = torch.randn((int(np.prod(shape[:-2])), 1, h // 4, w // 4), generator=gen, dtype=torch.float64)
    return std * F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).reshape(shape)


def _settings(n: int, seed: int) -> list[tuple[str, Degradation, torch.Tensor, np.ndarray, bool]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for name, scale, pad in (("mnist x4", 4, 28), ("mnist x8", 8, 32)):
        hr = torch.from_numpy(load_mnist("train", pad_to=pad).images[:n].astype(np.float64) / 255.0)
        deg = Degradation((pad, pad), scale)
        out.append((name, deg, hr + _smooth_noise(tuple(hr.shape), gen), hr, False))
    deg = Degradation((32, 128), 4)
    coarse = torch.rand((n, 3, 8, 32), generator=gen, dtype=torch.float64)
    hr = F.interpolate(coarse, size=(32, 128), mode="bicubic", align_corners=False).clamp(0, 1)
    out.append(("plates x4 RGB", deg, hr + _smooth_noise(tuple(hr.shape), gen), hr, True))
    return out


def _time(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up (operator caches, first-call allocations)
    times, res = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bank", default=None, metavar="MODEL",
                    help="instead: a shipped model's strict step on one bank, old against new (see bank_step_timing)")
    ap.add_argument("--steps", type=int, default=8, help="--bank / --modes: DDPM steps of the bank")
    ap.add_argument("--engines", default=None, metavar="A,B",
                    help="instead: a whole strict-mode bank of engine A against engine B (names or checkpoint paths), "
                         "timed alternately, and what each spends on the flow's input (the de-clip estimator)")
    ap.add_argument("--images", type=int, default=20, help="--engines: training images of the strict-step timing")
    ap.add_argument("--shrink", default=None, metavar="MODEL",
                    help="instead: a shipped model's whole strict bank with its Haar shrinkage against without it "
                         "(see shrink_timing)")
    ap.add_argument("--modes", default=None, metavar="MODEL",
                    help="instead: a shipped model's whole bank in strict mode against flow mode (see mode_timing)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.engines:
        a, b = args.engines.split(",")
        res = engine_timing(a, b, args.n, args.steps, args.repeats, args.seed, args.images)
        (ta, tb), (sa, sb), (fa, fb) = res["bank"], res["step"], res["input"]
        print(f"{args.n}-sample strict bank, {args.steps} steps, one thread: whole bank (median of {args.repeats} "
              f"alternating runs) A {ta:.3f} s, B {tb:.3f} s ({100 * (tb / ta - 1):+.1f}%); strict step on shared "
              f"latents (mean of {args.images} training images) A {1000 * sa:.1f} ms, B {1000 * sb:.1f} ms "
              f"({1000 * (sb - sa):+.1f} ms); the flow's input A {1000 * fa:.2f} ms, B {1000 * fb:.2f} ms")
        return
    if args.shrink:
        t = shrink_timing(args.shrink, args.n, args.steps, args.repeats, args.seed)
        print(f"{args.shrink}: {args.n}-sample strict bank, {args.steps} steps, one thread, median of {args.repeats} "
              f"alternating runs: without the shrinkage {t['plain']:.3f} s, with it {t['shrunk']:.3f} s "
              f"({100 * (t['shrunk'] / t['plain'] - 1):+.1f}%); the shrinkage alone {1e3 * t['alone']:.1f} ms")
        return
    if args.modes:
        flow, strict = mode_timing(args.modes, args.n, args.steps, args.repeats, args.seed)
        print(f"{args.modes}: {args.n}-sample bank, {args.steps} steps, one thread, median of {args.repeats} "
              f"alternating runs: flow mode {flow:.3f} s, strict mode {strict:.3f} s, the exact projection adds "
              f"{1e3 * (strict - flow):+.0f} ms per bank ({100 * (strict / flow - 1):+.1f}%)")
        return
    if args.bank:
        old, new = bank_step_timing(args.bank, args.n, args.steps, args.repeats, args.seed)
        print(f"{args.bank}: {args.n}-sample bank, {args.steps} steps, one thread, median of {args.repeats} "
              f"alternating runs: old strict step {1e3 * old:.1f} ms, new {1e3 * new:.1f} ms, "
              f"extra {1e3 * (new - old):+.1f} ms per bank")
        return
    print(f"{'setting':<15} {'method':<28} {'seconds':>8} {'steps':>6} {'exact':>6}")
    for name, deg, x0, hr, dark_ink in _settings(args.n, args.seed):
        _report(name, deg, x0, hr, dark_ink, args.repeats)


@torch.no_grad()
def bank_step_timing(model: str, n: int = 64, steps: int = 8, repeats: int = 9, seed: int = 0) -> tuple[float, float]:
    """Seconds of the strict step of one ``n``-sample bank of a shipped model (a training digit or training plate),
    old against new, timed alternately (median of ``repeats`` each): old = the flow fed the LR image, then
    ``Degradation.project`` onto ``D x = Y/255`` and rounding; new = the flow fed the de-clipped LR image, the
    model's Haar shrinkage, then the background weights and :func:`strict_project` (projection, rounding,
    verification). The kernel DDPM's
    latents, which both share, are drawn once and not timed."""
    eng = load_engine(model)
    hr = _training_hr(eng, seed)
    lr = make_lr(hr, eng.scale)[0]
    deg = get_degradation(hr.shape[-2:], eng.scale, eng.kernel)
    gens = [torch.Generator().manual_seed(int(s)) for s in sample_seeds(seed, n)]
    y = torch.from_numpy(lr.astype(np.float32) / 255.0)[None, None].expand(n, -1, -1, -1)
    zs = eng.sample_latents(y, gens, mode="strict", tau=1.0, steps=steps, scheduler="ddim", timesteps=None,
                            start_step=None)
    y_new = torch.from_numpy(eng.flow_input(lr[None])).float()[None].expand(n, -1, -1, -1)

    def old():
        x = eng.flow.inverse(y, zs)
        return np.round(deg.project(x.double(), y.double(), tol=eng.projection_tol).x.clamp(0, 1).numpy() * 255)

    def new():
        return _strict_step(eng, deg, lr, y_new, zs)

    old(), new()  # warm-up
    t_old, t_new = [], []
    for _ in range(repeats):
        for fn, out in ((old, t_old), (new, t_new)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(t_old), statistics.median(t_new)


def _strict_step(eng, deg: Degradation, lr: np.ndarray, y_flow: torch.Tensor, zs):
    """Strict mode's step after the kernel DDPM: the flow's inverse from ``y_flow`` (its input, batched) and the
    latents, the model's Haar shrinkage (``StrictSettings.shrink``; none at 0), then :func:`strict_project` in the
    engine's metric (uint8 samples and the projection's record)."""
    x = eng.strict.shrink(eng.flow.inverse(y_flow, zs).double(), eng.scale)
    return strict_project(deg, x, lr[None], weights=eng.strict.weights(x), tol=eng.projection_tol)


def _training_hr(eng, seed: int, count: int = 1) -> np.ndarray:
    """``count`` training HR images for ``eng``'s domain (training plates, or MNIST training rows from ``seed``)."""
    if eng.domain == "plates":
        return render_plates(count, seed=seed, split="train").images
    return load_mnist("train", pad_to=mnist_canvas(eng.scale)).images[seed : seed + count]


def mode_timing(model: str, n: int = 64, steps: int = 8, repeats: int = 9, seed: int = 0) -> tuple[float, float]:
    """Seconds of one whole ``n``-sample bank of a shipped model (a training digit or training plate) in flow mode
    and in strict mode, timed alternately after a warm-up of each (median of ``repeats`` each): what the exact
    projection (with its verification) adds to a bank."""
    eng = load_engine(model)
    lr = make_lr(_training_hr(eng, seed), eng.scale)[0]
    times: dict[str, list[float]] = {"flow": [], "strict": []}
    for mode in times:
        eng.sample_bank(lr, n=n, steps=steps, seed=seed, mode=mode)  # warm-up
    for r in range(repeats):
        for mode, out in times.items():
            t = time.perf_counter()
            eng.sample_bank(lr, n=n, steps=steps, seed=seed + 1 + r, mode=mode)
            out.append(time.perf_counter() - t)
    return statistics.median(times["flow"]), statistics.median(times["strict"])


def shrink_timing(model: str, n: int = 64, steps: int = 8, repeats: int = 9, seed: int = 0) -> dict[str, float]:
    """What a shipped model's Haar shrinkage (``StrictSettings.shrink_grey``) costs, one thread: seconds of one
    whole strict-mode ``n``-sample bank on a training LR image with it (``shrunk``) and from the same engine with
    ``shrink_grey = 0`` (``plain``), timed alternately after a warm-up of each (median of ``repeats`` each), and
    of the shrinkage alone on ``n`` samples of the model's HR size (``alone``, median of ``repeats``)."""
    eng = load_engine(model)
    if eng.strict.shrink_grey == 0:
        raise ValueError(f"{model} does not shrink (shrink_grey 0): nothing to time")
    plain = copy.copy(eng)
    plain.strict = dataclasses.replace(eng.strict, shrink_grey=0.0)
    hr = _training_hr(eng, seed)
    lr = make_lr(hr, eng.scale)[0]
    times: dict[str, list[float]] = {"plain": [], "shrunk": [], "alone": []}
    engines = {"plain": plain, "shrunk": eng}
    for e in engines.values():
        e.sample_bank(lr, n=n, steps=steps, seed=seed)  # warm-up
    for r in range(repeats):
        for k, e in engines.items():
            t = time.perf_counter()
            e.sample_bank(lr, n=n, steps=steps, seed=seed + 1 + r)
            times[k].append(time.perf_counter() - t)
    x = torch.rand((n, 1, *hr.shape[-2:]), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    for _ in range(repeats):
        t = time.perf_counter()
        eng.strict.shrink(x, eng.scale)
        times["alone"].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


@torch.no_grad()
def engine_timing(a: str, b: str, n: int = 64, steps: int = 8, repeats: int = 9, seed: int = 0,
                  images: int = 20) -> dict[str, tuple[float, float]]:
    """Engine ``a`` against engine ``b`` (e.g. a model before and after its de-clip estimator), one thread:

    - ``bank``: seconds of one whole strict-mode ``n``-sample bank on a training LR image of ``a``'s domain, timed
      alternately after a warm-up of each (median of ``repeats`` each);
    - ``step``: mean seconds of the strict step alone (the flow's input, the flow's inverse, :func:`strict_project`)
      over ``images`` training LR images, both engines decoding the same latents (drawn once per image by ``a``'s
      kernel DDPM, not timed): the part of a bank that the two can differ in when they share a UNet, without the
      DDPM's run-to-run noise;
    - ``input``: seconds of the flow's input alone (:meth:`FlowEngine.flow_input`, median of 200 calls).
    """
    torch.set_num_threads(1)
    engines = {"a": load_engine(a), "b": load_engine(b)}
    first = engines["a"]
    hr = _training_hr(first, seed, count=max(1, images))
    lrs = make_lr(hr, first.scale)
    deg = get_degradation(hr.shape[-2:], first.scale, first.kernel)
    out: dict[str, dict[str, float]] = {"bank": {}, "step": {}, "input": {}}
    times: dict[str, list[float]] = {k: [] for k in engines}
    for eng in engines.values():
        eng.sample_bank(lrs[0], n=n, steps=steps, seed=seed)  # warm-up
    for r in range(repeats):
        for k, eng in engines.items():
            t = time.perf_counter()
            eng.sample_bank(lrs[0], n=n, steps=steps, seed=seed + 1 + r)
            times[k].append(time.perf_counter() - t)
    steps_s: dict[str, list[float]] = {k: [] for k in engines}
    for i, lr in enumerate(lrs):
        gens = [torch.Generator().manual_seed(int(s)) for s in sample_seeds(seed + i, n)]
        y = torch.from_numpy(lr.astype(np.float32) / 255.0)[None, None].expand(n, -1, -1, -1)
        zs = first.sample_latents(y, gens, mode="strict", tau=1.0, steps=steps, scheduler="ddim", timesteps=None,
                                  start_step=None)
        for k, eng in engines.items():
            t = time.perf_counter()
            _strict_step(eng, deg, lr, torch.from_numpy(eng.flow_input(lr[None])).float()[None].expand(n, -1, -1, -1),
                         zs)
            steps_s[k].append(time.perf_counter() - t)
    for k, eng in engines.items():
        calls = []
        for _ in range(200):
            t = time.perf_counter()
            eng.flow_input(lrs[0][None])
            calls.append(time.perf_counter() - t)
        out["bank"][k] = statistics.median(times[k])
        out["step"][k] = float(np.mean(steps_s[k]))
        out["input"][k] = statistics.median(calls)
    return {part: (v["a"], v["b"]) for part, v in out.items()}


def _report(name: str, deg: Degradation, x0: torch.Tensor, hr: torch.Tensor, dark_ink: bool, repeats: int) -> None:
    lr = np.round(np.clip(deg.down(hr).numpy() * 255, 0, 255)).astype(np.uint8)  # (N, [C,] h, w)
    lo, hi = slab_bounds(lr, default_margin(deg))
    wts = background_weights(x0, dark_ink=dark_ink)
    rows = [
        ("project_slab euclidean", lambda: project_slab(deg, x0, lo, hi)),
        ("project_slab weighted", lambda: project_slab(deg, x0, lo, hi, wts)),
        ("strict_project weighted", lambda: strict_project(deg, x0, lr, wts)),
        ("Degradation.project auto", lambda: deg.project(x0, torch.from_numpy(lr) / 255.0, method="auto")),
    ]
    for label, fn in rows:
        sec, res = _time(fn, repeats)
        if isinstance(res, tuple):  # strict_project: (uint8 images, info)
            steps, exact = res[1].iterations, int(rounds_back(deg, res[0], lr).sum())
        else:
            u8 = np.round(res.x.clamp(0, 1).numpy() * 255).astype(np.uint8)
            steps, exact = res.iterations, int(rounds_back(deg, u8, lr).sum())
        print(f"{name:<15} {label:<28} {sec:8.3f} {steps:6d} {exact:6d}")


if __name__ == "__main__":
    main()
