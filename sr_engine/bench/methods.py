"""The benchmarked methods behind one call: ``Methods.bank(setting, lr, n, seed) -> uint8 (n, H, W)``.

Families (``FAMILIES``):
- ``bicubic``: torch bicubic interpolation of the LR image (``sr_engine.degradation.bicubic_up``); one answer.
- ``regression``: the L2 regression net on the bicubic image; one answer.
- ``prior``: the shipped engine's flow alone, z ~ N(0, tau^2 I) (SRFlow-style temperature sampling).
- ``pixel-ddpm`` / ``pixel-ddnm``: the SR3-style pixel DDPM sampled with DDIM, without / with the DDNM range
  projection ``x0_hat <- x0_hat + D^+(y - D x0_hat)`` at every step.
- ``kernel-flow`` / ``kernel-strict``: the shipped engine's kernel-space sampler in flow / strict mode (DDIM).

``Setting.shrink`` (grey; pixel families only) passes the pixel DDPM's output through the same Haar shrinkage that a
kernel model's strict mode may apply before its projection (:func:`sr_engine.projection.haar_shrink`,
``StrictSettings.shrink_grey``): a like-for-like comparison, never the benchmark's own baseline.

The samplers run DDIM unless a setting names another of the kernel DDPM's schedulers (``SCHEDULERS``: ``dpmsolver``,
or ``ddpm``, ancestral, drawing each step's noise from the sample's own generator); the benchmark runs DDIM.

Network evaluations per sample (``Setting.nfe``): the kernel sampler runs ``steps`` UNet calls on the z grid
(half the HR resolution) plus one inverse flow pass; the pixel DDPM runs ``steps`` UNet calls at full
resolution; prior sampling one flow pass; regression one forward pass. (The engine's extra forward flow pass
that reports each sample's flow consistency is bookkeeping and not counted.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from collections.abc import Callable

import numpy as np
import torch

from ..degradation import bicubic_up, get_degradation
from ..engines.base import sample_seeds
from ..engines.registry import load_engine
from ..models.kernel_diffusion import SCHEDULERS, KernelDDPMConfig, make_scheduler
from ..projection import StrictSettings
from .baselines import load_pixel_ddpm, load_regression
from .config import BenchConfig

R = TypeVar("R")

FAMILIES: tuple[str, ...] = ("bicubic", "regression", "prior", "pixel-ddpm", "pixel-ddnm", "kernel-flow",
                             "kernel-strict")
SAMPLERS: tuple[str, ...] = ("pixel-ddpm", "pixel-ddnm", "kernel-flow", "kernel-strict")  # the step sweep
DETERMINISTIC: tuple[str, ...] = ("bicubic", "regression")
PIXEL: tuple[str, ...] = ("pixel-ddpm", "pixel-ddnm")


@dataclass(frozen=True)
class Setting:
    """One method at one setting. ``steps`` is 0 where it does not apply; ``tau`` is the temperature of the
    starting Gaussian (``prior`` and the samplers; the benchmark runs the samplers at 1); ``scheduler`` the
    samplers' diffusers scheduler (the benchmark runs ``ddim``); ``shrink`` the grey threshold of the Haar shrinkage of
    the pixel families' output (0: none; the benchmark runs 0)."""

    family: str
    steps: int = 0
    tau: float = 1.0
    scheduler: str = "ddim"
    shrink: float = 0.0

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown method family {self.family!r}; expected one of {FAMILIES}")
        if self.family in SAMPLERS and self.steps < 1:
            raise ValueError(f"{self.family} needs steps >= 1")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; expected one of {SCHEDULERS}")
        if self.scheduler != "ddim" and self.family not in SAMPLERS:
            raise ValueError(f"{self.family} has no scheduler; only the samplers {SAMPLERS} take one")
        if not self.shrink >= 0:
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")
        if self.shrink and self.family not in PIXEL:
            raise ValueError(f"only {PIXEL} take a shrink (a kernel model's is its StrictSettings.shrink_grey)")

    @property
    def label(self) -> str:
        if self.family == "prior":
            return f"flow only (prior, tau={self.tau:g})"
        if self.family in SAMPLERS:
            temp = f", tau={self.tau:g}" if self.tau != 1.0 else ""
            sched = f", {self.scheduler}" if self.scheduler != "ddim" else ""
            shrink = f", shrink {self.shrink:g}" if self.shrink else ""
            return f"{self.family} ({self.steps} step{'s' if self.steps != 1 else ''}{temp}{sched}{shrink})"
        return self.family

    @property
    def nfe(self) -> int:
        return {"bicubic": 0, "regression": 1, "prior": 1, "pixel-ddpm": self.steps, "pixel-ddnm": self.steps,
                "kernel-flow": self.steps + 1, "kernel-strict": self.steps + 1}[self.family]

    @property
    def deterministic(self) -> bool:
        return self.family in DETERMINISTIC


def settings_for(cfg: BenchConfig) -> list[Setting]:
    """Every method at every setting of a run: bicubic, regression, prior at each temperature, each sampler at
    each number of steps."""
    out = [Setting("bicubic"), Setting("regression")] + [Setting("prior", tau=t) for t in cfg.taus]
    return out + [Setting(f, steps=s) for f in SAMPLERS for s in cfg.steps]


def timed(fn: Callable[[], R], repeats: int = 1) -> tuple[R, float]:
    """(last result, median wall seconds over ``repeats`` calls)."""
    secs = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t0)
    return out, float(np.median(secs))


@torch.no_grad()
def pixel_sample(unet, cfg: KernelDDPMConfig, up: torch.Tensor, noise: torch.Tensor, steps: int,
                 y: torch.Tensor | None = None, scale: int = 4, scheduler: str = "ddim",
                 generators: list[torch.Generator] | None = None) -> torch.Tensor:
    """Sampling of the pixel DDPM: DDIM by default (deterministic given the starting noise).

    Args:
        up: (B, 1, H, W) bicubic-upsampled LR on [0, 1] (the condition).
        noise: (B, 1, H, W) x_T ~ N(0, I).
        y: (B, 1, H/s, W/s) LR on [0, 1]; when given, every step replaces the network's x0_hat by its range
            projection ``x0_hat + D^+(y - D x0_hat)`` (DDNM, Wang et al. 2023, eq. 13) and hands the scheduler the
            v that implies it, so the step samples x_{t-1} given (x_t, projected x0_hat); the last step
            (alpha_bar = 1) returns the projected x0_hat itself.
        scheduler: ``ddim``, ``dpmsolver`` or ``ddpm`` (ancestral: each step's noise comes from ``generators``,
            one per sample).
    Returns: (B, 1, H, W) on [0, 1] (clipped).
    """
    if scheduler == "ddpm" and (generators is None or len(generators) != noise.shape[0]):
        raise ValueError("the ancestral (ddpm) scheduler needs one generator per sample")
    sched = make_scheduler(cfg, scheduler)
    sched.set_timesteps(int(steps))
    cond = up * 2 - 1
    deg = get_degradation(tuple(up.shape[-2:]), scale, "bicubic") if y is not None else None
    x = noise
    for t in sched.timesteps:
        out = unet(torch.cat([sched.scale_model_input(x, t), cond], 1), t.expand(x.shape[0])).sample
        if deg is not None:
            a = sched.alphas_cumprod[int(t)].to(x.dtype)
            x0 = (a.sqrt() * x - (1 - a).sqrt() * out).clamp(-1, 1)  # v-prediction -> x0_hat on [-1, 1]
            x0 = deg.range_step(((x0 + 1) / 2).double(), y.double()).to(x.dtype) * 2 - 1
            out = (a.sqrt() * x - x0) / (1 - a).sqrt()  # the v whose x0_hat is the projected one
        x = sched.step(out, t, x, **({"generator": generators} if scheduler == "ddpm" else {})).prev_sample
    return ((x + 1) / 2).clamp(0, 1)


def _u8(x: torch.Tensor) -> np.ndarray:
    """(B, 1, H, W) on [0, 1] -> uint8 (B, H, W)."""
    return np.round(x.clamp(0, 1).double().numpy()[:, 0] * 255).astype(np.uint8)


class Methods:
    """Every family at one scale. ``baselines``: the folder with ``x<s>/regression.pt`` and
    ``x<s>/pixel-ddpm.pt`` (``plates-regression.pt`` ... for ``domain`` "plates"); ``engine``: a ``load_engine``
    name or path, or an engine already loaded. Only what ``families`` names is loaded. LR images may be rectangular
    (plates: 8 x 32)."""

    def __init__(self, scale: int, engine, baselines: str | Path, families=FAMILIES, batch_size: int = 64,
                 domain: str = "mnist"):
        self.scale = scale
        self.batch_size = batch_size
        fam = set(families)
        self.engine = None
        if fam & {"prior", "kernel-flow", "kernel-strict"}:
            self.engine = load_engine(engine, scale=scale) if isinstance(engine, str) else engine
            if self.engine.scale != scale:
                raise ValueError(f"engine {self.engine.name!r} is x{self.engine.scale}, not x{scale}")
        if self.engine is not None and self.engine.domain not in ("", domain):
            raise ValueError(f"engine {engine!r} was trained on {self.engine.domain}, not {domain}")
        root = Path(baselines)
        self.regression = load_regression(root, scale, domain) if "regression" in fam else None
        self.pixel = load_pixel_ddpm(root, scale, domain) if fam & {"pixel-ddpm", "pixel-ddnm"} else None

    def bank(self, s: Setting, lr: np.ndarray, n: int, seed: int) -> np.ndarray:
        """uint8 LR (h, w) -> uint8 (n, H, W); deterministic families return one image (n is ignored)."""
        if s.family == "bicubic":
            return bicubic_up(lr[None], self.scale)
        if s.family == "regression":
            up = torch.from_numpy(bicubic_up(lr[None], self.scale).astype(np.float32) / 255)[:, None]
            with torch.no_grad():
                return _u8(self.regression(up))
        if s.family in ("prior", "kernel-flow", "kernel-strict"):
            mode = {"prior": "prior", "kernel-flow": "flow", "kernel-strict": "strict"}[s.family]
            return self.engine.sample_bank(lr, n=n, steps=max(s.steps, 1), seed=seed, mode=mode, tau=s.tau,
                                           scheduler=s.scheduler).images
        unet, cfg = self.pixel
        seeds = sample_seeds(int(seed), int(n))
        side = (lr.shape[0] * self.scale, lr.shape[1] * self.scale)
        y1 = torch.from_numpy(lr.astype(np.float32) / 255)[None, None]
        up1 = torch.from_numpy(bicubic_up(lr[None], self.scale).astype(np.float32) / 255)[:, None]
        out = []
        for i in range(0, n, self.batch_size):
            b = seeds[i : i + self.batch_size]
            gens = [torch.Generator().manual_seed(int(v)) for v in b]  # the start, then any ancestral noise
            noise = torch.stack([torch.randn((1, *side), generator=g) for g in gens])
            noise = noise * s.tau  # exact at tau 1
            y = y1.expand(len(b), -1, -1, -1) if s.family == "pixel-ddnm" else None
            x = pixel_sample(unet, cfg, up1.expand(len(b), -1, -1, -1), noise, s.steps, y, self.scale,
                             scheduler=s.scheduler, generators=gens)
            x = StrictSettings(shrink_grey=s.shrink).shrink(x, self.scale)  # unchanged at 0
            out.append(_u8(x))
        return np.concatenate(out)
