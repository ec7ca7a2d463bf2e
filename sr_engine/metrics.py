"""Metrics, one definition each (docs/design.md, Metrics and Decisions).

Image arguments are numpy arrays: uint8 on 0..255, or float on [0, 1] where the name says so; shapes
``(H, W)``, ``(H, W, 3)``, or with a leading batch dimension ``(N, ...)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .degradation import downscale_255  # D on 0..255 (defined beside D; importers of metrics find it here too)

EXACT_DB = 100.0  # an exact match (MSE 0) counts as 100 dB in means, medians and plots
CONSISTENT_DB = 45.0  # LR-PSNR at or above this counts as consistent (NTIRE)


def _as_float(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    return img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)


def _chw(img: np.ndarray) -> np.ndarray:
    """(H, W) -> (1, H, W); (H, W, 3) -> (3, H, W)."""
    return img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0)


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB; MSE 0 gives EXACT_DB."""
    return EXACT_DB if mse <= 0 else min(EXACT_DB, 10.0 * math.log10(peak**2 / mse))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR between two images of the same shape, on 0..255 (floats on [0, 1] are scaled)."""
    return psnr_from_mse(float(np.mean((_as_float(a) * 255 - _as_float(b) * 255) ** 2)))


def lr_psnr(sr: np.ndarray, lr: np.ndarray, scale: int, kernel: str = "bicubic") -> float:
    """LR-PSNR (NTIRE): PSNR between round(clip(D(SR), 0, 255)) and the uint8 LR image, in dB.

    ``sr`` is one HR image (uint8, or float on [0, 1]); an exact match gives EXACT_DB.
    """
    d = np.round(np.clip(downscale_255(sr, scale, kernel), 0, 255))
    if d.shape != np.shape(lr):
        raise ValueError(f"D(SR) has shape {d.shape} but the LR image {np.shape(lr)}")
    return psnr_from_mse(float(np.mean((d - _as_float(lr) * 255) ** 2)))


def lr_psnr_batch(srs: np.ndarray, lr: np.ndarray, scale: int, kernel: str = "bicubic") -> np.ndarray:
    """LR-PSNR of each image of a bank ``(N, H, W[, 3])`` against one LR image; float64 (N,)."""
    d = np.round(np.clip(downscale_255(srs, scale, kernel), 0, 255))
    if d.shape[1:] != np.shape(lr):
        raise ValueError(f"D(SR) has shape {d.shape[1:]} but the LR image {np.shape(lr)}")
    err = (d - _as_float(lr)[None] * 255) ** 2
    mse = err.reshape(err.shape[0], -1).mean(1)
    return np.array([psnr_from_mse(float(m)) for m in mse])


def consistency_mse(sr: np.ndarray, lr: np.ndarray, scale: int, kernel: str = "bicubic") -> float:
    """MSE between D(SR) and LR on [0, 1], divided by 1e-5 (the pseudoinverse paper's unit)."""
    d = downscale_255(sr, scale, kernel) / 255.0
    if d.shape != np.shape(lr):
        raise ValueError(f"D(SR) has shape {d.shape} but the LR image {np.shape(lr)}")
    return float(np.mean((d - _as_float(lr)) ** 2)) / 1e-5


def flow_consistency(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||y_hat - y||^2 / dim y`` per image, for ``(B, ...)`` tensors on [0, 1]."""
    return (y_hat - y).flatten(1).pow(2).mean(1)


def _gaussian_window(size: int = 7, sigma: float = 1.5) -> np.ndarray:
    g = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


def _filter_valid(img: np.ndarray, win: np.ndarray) -> np.ndarray:
    """'valid' 2-D correlation of (C, H, W) with a small window."""
    k = win.shape[0]
    view = np.lib.stride_tricks.sliding_window_view(img, (k, k), axis=(-2, -1))
    return np.einsum("chwij,ij->chw", view, win)


SSIM_WINDOW = 7  # the SSIM window's side: its map loses SSIM_WINDOW // 2 pixels at every border


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The local SSIM of :func:`ssim` at every window centre: ``(C, H - 6, W - 6)`` (valid region)."""
    x, y = _chw(_as_float(a) * 255), _chw(_as_float(b) * 255)
    win = _gaussian_window(SSIM_WINDOW)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _filter_valid(x, win), _filter_valid(y, win)
    sxx = _filter_valid(x * x, win) - mx**2
    syy = _filter_valid(y * y, win) - my**2
    sxy = _filter_valid(x * y, win) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) on 0..255 with a Gaussian window (sigma 1.5; 7x7 so that 28x28 digits have
    room), valid region only, averaged over channels."""
    return float(ssim_map(a, b).mean())


def diversity(bank: np.ndarray) -> float:
    """Mean per-pixel standard deviation over a bank ``(N, ...)``, on [0, 1]."""
    return float(_as_float(bank).std(axis=0).mean())


def spread_skill(bank: np.ndarray, hr: np.ndarray) -> tuple[float, float]:
    """Skill and spread of a bank ``(N, ...)`` (N >= 2) against its HR image, on [0, 1]: skill is the mean squared
    error of a sample, spread the mean squared distance between two different samples (twice the unbiased
    per-pixel variance). For a calibrated sampler the HR image is one more draw from the same law, so the two
    agree; skill / spread above 1 means the bank is narrower than its own error (over-confident), below 1 wider."""
    x = _as_float(bank)
    if len(x) < 2:
        raise ValueError("spread needs a bank of at least two samples")
    skill = float(((x - _as_float(hr)[None]) ** 2).mean())
    spread = float(2.0 * x.var(axis=0, ddof=1).mean())
    return skill, spread


def background_mask(hr: np.ndarray, dark_ink: bool = False, distance: int = 2, ink_level: float = 0.5) -> np.ndarray:
    """Background pixels of an HR image: bool ``(H, W)``, True more than ``distance`` pixels (Chebyshev) from any
    stroke pixel. A stroke pixel has ink ``>= ink_level`` on [0, 1]: the intensity for light strokes on a dark
    background (digits), ``1 - intensity`` with ``dark_ink`` (dark text on a light plate); colour images use the
    channel mean."""
    x = _as_float(hr)
    if x.ndim == 3:
        x = x.mean(-1)
    ink = (1.0 - x if dark_ink else x) >= ink_level
    k = 2 * distance + 1
    padded = np.pad(ink, distance, constant_values=False)
    near = np.lib.stride_tricks.sliding_window_view(padded, (k, k)).any(axis=(-2, -1))
    return ~near


def background_ssim_loss(sr: np.ndarray, hr: np.ndarray, dark_ink: bool = False, distance: int = 2) -> float:
    """The part of ``1 - ssim(sr, hr)`` that windows centred on the HR image's background make
    (:func:`background_mask`): the sum of ``1 - local SSIM`` over those centres divided by all centres, so that
    it and the rest add up to ``1 - ssim``. Large where a sample's error is faint texture on flat background, which
    SSIM weighs far more than its squared size. ``sr`` is one image or a bank ``(N, ...)`` (averaged over it)."""
    h = _as_float(hr)
    s = _as_float(sr)
    bank = s[None] if s.shape == h.shape else s
    r = SSIM_WINDOW // 2
    mask = background_mask(hr, dark_ink, distance)[r : h.shape[0] - r, r : h.shape[1] - r]
    return float(np.mean([(1.0 - ssim_map(x, h)).mean(0)[mask].sum() / mask.size for x in bank]))


def background_haze(sr: np.ndarray, hr: np.ndarray, dark_ink: bool = False, distance: int = 2) -> float:
    """Background haze in grey levels: the mean ``|SR - HR|`` over the background pixels of the HR image
    (:func:`background_mask`: more than ``distance`` pixels from any stroke); on a black digit background it is
    the mean grey there. ``sr`` is one image or a bank ``(N, ...)`` of the HR image's shape (averaged over it);
    NaN when the HR image has no background pixel."""
    mask = background_mask(hr, dark_ink, distance)
    if not mask.any():
        return float("nan")
    s, h = _as_float(sr) * 255, _as_float(hr) * 255
    if s.shape == h.shape:
        s = s[None]
    return float(np.abs(s - h[None])[:, mask].mean())
