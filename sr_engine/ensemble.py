"""The ensemble of chosen samples (LDM-SS): their pixel mean, optionally weighted, checked for consistency.

D is linear, so the mean of exactly consistent samples is consistent up to the 8-bit rounding of the result;
the check reports LR-PSNR (against D) and the flow check ``f(x_ens) -> y_hat`` (``||y_hat - y||^2 / dim y``),
and re-projects onto {D x = y, 0 <= x <= 1} when the LR-PSNR falls below 45 dB (or always / never).

Which samples to average: :func:`most_voted`, the one definition of "most-voted" (docs/design.md, Aggregation):
approval count, ties broken by Borda score, then by the lower sample index; a sample nobody picked is never
chosen. The app's aggregation (``annotation.aggregate``) and the benchmark's simulated raters both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .degradation import get_degradation
from .metrics import CONSISTENT_DB, consistency_mse, lr_psnr


@dataclass
class EnsembleReport:
    """image: uint8 HR (H, W) or (H, W, 3). lr_psnr: dB after any re-projection (100 = exact);
    lr_psnr_before: dB of the plain mean. flow_consistency: None where the engine has no flow."""

    image: np.ndarray
    lr_psnr: float
    lr_psnr_before: float
    consistency_mse: float
    flow_consistency: float | None
    reprojected: bool
    n: int
    weights: list[float]
    method: str = "pixel-mean"


def ensemble_of(images: np.ndarray, y: np.ndarray, scale: int, kernel: str, *,
                weights: Sequence[float] | None = None,
                reproject: Literal["auto", "always", "never"] = "auto",
                flow_y: Callable[[torch.Tensor], torch.Tensor] | None = None) -> EnsembleReport:
    """Args:
        images: uint8 (n, H, W) or (n, H, W, 3), n >= 1.
        y: the LR image as float (C, h, w) on [0, 1].
        weights: non-negative, not all zero (e.g. vote counts); default equal.
        flow_y: the flow's LR output for (B, C, H, W) on [0, 1], for the flow check.
    """
    imgs = np.asarray(images)
    if imgs.dtype != np.uint8 or imgs.ndim not in (3, 4) or len(imgs) == 0:
        raise ValueError(f"images must be a non-empty uint8 stack (n, H, W[, 3]), got {imgs.dtype} {imgs.shape}")
    if reproject not in ("auto", "always", "never"):
        raise ValueError(f"reproject must be 'auto', 'always' or 'never', got {reproject!r}")
    c, h, wd = y.shape
    expect = (h * scale, wd * scale) + ((3,) if c == 3 else ())
    if imgs.shape[1:] != expect:
        raise ValueError(f"images of shape {imgs.shape[1:]} do not match the LR image (x{scale}: {expect})")
    w = np.ones(len(imgs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(imgs),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be one finite non-negative number per image, not all zero")
    w = w / w.sum()
    mean = np.tensordot(w, imgs.astype(np.float64) / 255.0, axes=1)  # (H, W[, 3]) on [0, 1]
    lr_ref = y[0] if y.shape[0] == 1 else np.moveaxis(y, 0, -1)
    out = np.round(mean * 255).astype(np.uint8)
    before = lr_psnr(out, lr_ref, scale, kernel)
    redo = reproject == "always" or (reproject == "auto" and before < CONSISTENT_DB)
    if redo:
        chw = torch.from_numpy(mean[None] if mean.ndim == 2 else np.moveaxis(mean, -1, 0))
        deg = get_degradation(tuple(chw.shape[-2:]), scale, kernel)
        x = deg.project(chw[None], torch.from_numpy(y)[None]).x[0].numpy()
        out = np.round((x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)) * 255).astype(np.uint8)
    after = lr_psnr(out, lr_ref, scale, kernel) if redo else before
    fc = None
    if flow_y is not None:
        t = torch.from_numpy(out.astype(np.float32) / 255.0)
        t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
        fc = float((flow_y(t) - torch.from_numpy(y).float()[None]).pow(2).mean())
    return EnsembleReport(image=out, lr_psnr=after, lr_psnr_before=before,
                          consistency_mse=consistency_mse(out, lr_ref, scale, kernel), flow_consistency=fc,
                          reprojected=redo, n=len(imgs), weights=w.tolist())


def vote_ranking(approval: Sequence[int], borda: Sequence[int]) -> list[int]:
    """Sample indices, most-voted first: approval count desc, then Borda score desc, then index asc."""
    return sorted(range(len(approval)), key=lambda i: (-int(approval[i]), -int(borda[i]), i))


def vote_counts(picks: Sequence[Sequence[int]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(approval, Borda) int64 (n,) from each rater's ranked picks (best first): a pick at rank r (1-based) of
    a rater's k picks earns one approval and ``k - r + 1`` Borda points."""
    approval, borda = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for p in picks:
        p = [int(i) for i in p]
        if len(set(p)) != len(p) or any(not 0 <= i < n for i in p):
            raise ValueError(f"picks {p} are not distinct indices in [0, {n})")
        approval[p] += 1
        borda[p] += len(p) - np.arange(len(p))
    return approval, borda


def most_voted(picks: Sequence[Sequence[int]], n: int, m: int) -> list[int]:
    """The m most-voted of n samples (:func:`vote_ranking` over :func:`vote_counts`), never one nobody picked:
    fewer than m when fewer were picked."""
    approval, borda = vote_counts(picks, n)
    return [i for i in vote_ranking(approval, borda) if approval[i] > 0][:m]
