"""The engine contract: the :class:`Bank` a bank source returns, the :class:`SREngine` protocol that the store
and the app call, the five sampling modes, per-sample seeds, and the helpers every engine shares (LR input
validation, uint8 conversion, file hashes).

One contract, several implementations: :class:`sr_engine.engines.flow_engine.FlowEngine` (flow pseudoinverse +
kernel DDPM) and :class:`sr_engine.engines.diffusers_engine.DiffusersEngine` (a wrapped diffusers pipeline);
:func:`sr_engine.engines.registry.load_engine` picks one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..ensemble import EnsembleReport

Mode = Literal["strict", "flow", "prior", "guided", "free"]
MODES: tuple[str, ...] = get_args(Mode)  # every engine's modes, one list (the database's enum holds the same five)


@dataclass
class Bank:
    """A bank of HR samples for one LR image.

    images: uint8 (n, H*s, W*s) or (n, H*s, W*s, 3).
    seeds: int64 (n,); ``sample_bank(lr, n=1, seed=seeds[i])`` reproduces sample i.
    lr_psnr: (n,) LR-PSNR in dB (NTIRE; 100 = exact).
    flow_consistency: (n,) ``||y_hat - y||^2 / dim y`` from the flow's forward pass, or None (no flow).
    projection_residual: (n,) max |D x - y| on [0, 1] where the strict projection ran, else None.
    """

    images: np.ndarray
    seeds: np.ndarray
    lr_psnr: np.ndarray
    flow_consistency: np.ndarray | None
    projection_residual: np.ndarray | None
    mode: str
    steps: int
    scheduler: str
    model: str
    seconds: float
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


@runtime_checkable
class SREngine(Protocol):
    """What the store and the app call; the flow engine and a wrapped diffusers pipeline both satisfy it.

    name: the model's name (a shipped name, a checkpoint path or ``diffusers:<folder>``).
    scale: HR side / LR side. channels: 1 (grey) or 3 (RGB).
    modes: the sampling modes it supports (a subset of :data:`MODES`); schedulers: the ``scheduler=`` names.
    lr_shape: the LR (height, width) it takes, None in a place for any size there; None for any size at all.
    max_lr_side: larger LR images are refused. option_names: the options ``with_options`` / a project may set.
    domain: what the model was trained on ("mnist", "plates"), "" when unknown (a diffusers pipeline).
    config: the engine config recorded with every bank (provenance).
    """

    name: str
    scale: int
    channels: int
    modes: tuple[str, ...]
    schedulers: tuple[str, ...]
    lr_shape: tuple[int | None, int | None] | None
    max_lr_side: int
    option_names: tuple[str, ...]
    domain: str

    @property
    def config(self) -> dict: ...

    def sample_bank(self, lr: Any, n: int = 64, steps: int = 8, seed: int = 0, *, mode: str | None = None,
                    tau: float = 1.0, timesteps: Sequence[int] | None = None, start_step: int | None = None,
                    scheduler: str = "ddim", progress: bool = False) -> Bank: ...

    def ensemble(self, images: np.ndarray, lr: Any, weights: Sequence[float] | None = None, *,
                 reproject: Literal["auto", "always", "never"] = "auto") -> EnsembleReport: ...


def check_mode(mode: str | None, supported: tuple[str, ...]) -> str:
    """The mode to run (None: "strict"); ValueError for an unknown one or one the engine does not support."""
    mode = mode or "strict"
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if mode not in supported:
        raise ValueError(f"mode {mode!r} is not supported by this engine; it supports {supported}")
    return mode


def check_bank_args(n: int, tau: float) -> None:
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")


def sample_seeds(seed: int, n: int) -> np.ndarray:
    """Per-sample seeds of a bank seeded ``seed``: sample 0 carries ``seed`` itself, sample i >= 1 a 63-bit seed
    drawn from (seed, i) by ``numpy.random.SeedSequence``. So ``n=1, seed=seeds[i]`` reproduces sample i, and
    banks with different seeds share no sample."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = seed if i == 0 else int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint64)[0] >> 1)
    return out


def as_lr_array(lr: Any, channels: int, max_side: int) -> np.ndarray:
    """Validate an LR image: uint8 ``(H, W)`` / ``(H, W, 3)`` array, float array on [0, 1], or a PIL image.

    Returns float64 ``(C, H, W)`` on [0, 1]. Raises ``ValueError`` for what cannot be used; never resizes.
    """
    if isinstance(lr, Image.Image):
        if lr.mode not in ("L", "RGB"):
            raise ValueError(f"PIL image mode {lr.mode!r} is not supported; give 'L' or 'RGB'")
        lr = np.asarray(lr)
    arr = np.asarray(lr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise ValueError(f"LR image must be (H, W) or (H, W, 3), got shape {arr.shape}")
    got_c = 1 if arr.ndim == 2 else 3
    if got_c != channels:
        raise ValueError(f"this model takes {channels}-channel images, got {got_c} channels")
    if arr.size == 0 or min(arr.shape[:2]) == 0:
        raise ValueError("LR image is empty")
    if max(arr.shape[:2]) > max_side:
        raise ValueError(f"LR image {arr.shape[:2]} is larger than the limit of {max_side} pixels a side")
    if arr.dtype == np.uint8:
        f = arr.astype(np.float64) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("LR image contains NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError("a float LR image must lie in [0, 1]")
        f = arr.astype(np.float64)
    else:
        raise ValueError(f"LR image dtype {arr.dtype} is not supported; give uint8 or float on [0, 1]")
    return f[None] if f.ndim == 2 else np.moveaxis(f, -1, 0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) on [0, 1] -> uint8 (B, H, W) or (B, H, W, 3)."""
    a = np.round(x.clamp(0, 1).double().numpy() * 255).astype(np.uint8)
    return a[:, 0] if a.shape[1] == 1 else np.moveaxis(a, 1, -1)


def from_uint8(images: np.ndarray, channels: int) -> torch.Tensor:
    """uint8 (B, H, W) or (B, H, W, 3) -> float32 (B, C, H, W) on [0, 1]."""
    t = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)
    return t[:, None] if channels == 1 else t.permute(0, 3, 1, 2)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (model cards and exports quote it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
