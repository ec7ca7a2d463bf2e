"""Shared test setup: one torch thread (the machine is small and busy), the package importable from the
repository root, and small helpers used by several test modules."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(1)


def randomize_last_layers(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    """Give the zero-initialised last conv of every affine coupling random weights, so that a flow is no
    longer a plain Haar transform (otherwise invertibility and log-det tests would be nearly trivial)."""
    from sr_engine.flow import AffineCoupling

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, AffineCoupling):
                last = m.subnet[-1]
                last.weight.copy_(torch.randn(last.weight.shape, generator=gen, dtype=last.weight.dtype) * std)
                last.bias.copy_(torch.randn(last.bias.shape, generator=gen, dtype=last.bias.dtype) * std)


def smooth_hr(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A digit-like float64 HR image (H, W) on [0, 1]: a bright ring plus a stroke, with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    r = np.hypot((yy - cy) / max(h / 3, 1), (xx - cx) / max(w / 3, 1))
    img = np.exp(-((r - 1.0) ** 2) / 0.08) + 0.8 * np.exp(-((xx - cx - (yy - cy) * 0.3) ** 2) / 2.0)
    img = img + 0.05 * rng.standard_normal((h, w))
    return np.clip(img / img.max(), 0, 1)
