"""Where a bank disagrees: the per-pixel standard deviation over its samples and its first principal components
shown as mean +/- 2 sigma images, with the share of the bank's variance each explains (as in principal uncertainty
quantification, PUQ: Belhasin et al. 2023, which shows the principal directions of the posterior's samples).

    u = bank_uncertainty(bank.images, components=3)
    u.std            # uint8 (H, W[, C]): the per-pixel std, stretched so the largest is 255
    u.minus[0], u.plus[0], u.explained[0]   # mean - 2 sigma_1 v_1, mean + 2 sigma_1 v_1, its variance share
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class BankUncertainty:
    mean: np.ndarray  # uint8 (H, W[, C]): the bank's pixel mean
    std: np.ndarray  # uint8 (H, W[, C]): per-pixel std, scaled by 255 / its maximum (all 0 when the bank agrees)
    std_max: float  # the largest per-pixel std before scaling, on 0..255
    minus: tuple[np.ndarray, ...]  # uint8 (H, W[, C]) per component: mean - 2 sigma_k v_k, clipped to 0..255
    plus: tuple[np.ndarray, ...]  # ... mean + 2 sigma_k v_k
    sigma: tuple[float, ...]  # the components' standard deviations (0..255 scale)
    explained: tuple[float, ...]  # the share of the bank's total variance each component explains


def bank_uncertainty(images: np.ndarray, components: int = 3) -> BankUncertainty:
    """uint8 (N, H, W) or (N, H, W, C) samples -> their std and first ``components`` principal components (fewer
    when the bank has fewer than ``components + 1`` samples or less rank)."""
    images = np.asarray(images)
    if images.ndim not in (3, 4) or images.dtype != np.uint8 or len(images) < 1:
        raise ValueError(f"a bank must be uint8 (N, H, W) or (N, H, W, C) with N >= 1, got {images.dtype} "
                         f"{images.shape}")
    shape = images.shape[1:]
    x = images.reshape(len(images), -1).astype(np.float64)
    mean = x.mean(0)
    std = x.std(0)
    std_max = float(std.max())
    centred = x - mean
    # principal directions of the samples: right singular vectors of the centred (N, D) matrix
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2 / max(len(x) - 1, 1)
    total = float(var.sum())
    keep = [k for k in range(min(components, len(s))) if var[k] > 1e-12 * max(total, 1e-300)]
    u8 = lambda a: np.clip(np.round(a), 0, 255).astype(np.uint8).reshape(shape)  # noqa: E731
    sig = [float(np.sqrt(var[k])) for k in keep]
    return BankUncertainty(
        mean=u8(mean), std=u8(std * (255.0 / std_max) if std_max > 0 else std), std_max=std_max,
        minus=tuple(u8(mean - 2 * sig[i] * vt[k]) for i, k in enumerate(keep)),
        plus=tuple(u8(mean + 2 * sig[i] * vt[k]) for i, k in enumerate(keep)),
        sigma=tuple(sig), explained=tuple(float(var[k] / total) for k in keep))
