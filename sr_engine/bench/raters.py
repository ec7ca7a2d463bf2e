"""Ambiguity resolution with simulated raters (the question of the LDM-SS paper).

Each rater (a digit classifier trained on training half 0) picks, from one image's bank, its ``k`` most
confident samples (highest top-class probability, as a rater picks the most plausible ones), ranked. The
``m`` most-voted samples (:func:`sr_engine.ensemble.most_voted`, the app's rule: approval count; ties broken by
Borda score, then sample index) are averaged into the ensemble. The judge (trained on training half 1) then
reads the ensemble, the bank's first sample (a random draw: samples are independent), the regression output and
the bicubic image.

The ambiguous subset is fixed before looking at any method's output: the images whose bicubic upsampling the
judge misreads or reads with confidence below ``ambiguous_confidence`` (0.5, set in advance, not tuned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ensemble import most_voted
from ..eval.judge import predict_digits
from ..eval.tables import mean_u8
from ..metrics import lr_psnr


@dataclass
class AmbiguityRow:
    scale: int
    method: str  # whose bank the raters pick from
    bank_n: int  # samples per bank
    images: int
    ambiguous_images: int
    acc_ensemble: float  # judge reads the true digit in the ensemble of the m most-voted samples
    acc_single: float  # ... in one random sample of the bank
    acc_regression: float
    acc_bicubic: float
    acc_hr: float  # the judge on the HR images themselves (its ceiling)
    amb_acc_ensemble: float  # the same on the ambiguous subset (NaN when it is empty)
    amb_acc_single: float
    amb_acc_regression: float
    amb_acc_bicubic: float
    ensemble_lr_psnr_mean: float  # LR-PSNR of the ensembles (exact = 100 dB)


def rater_picks(probs: np.ndarray, k: int) -> np.ndarray:
    """probs (n, 10) of one rater over a bank -> the indices of its k most confident samples, best first
    (stable: equal confidence keeps the sample order)."""
    conf = probs.max(1)
    return np.argsort(-conf, kind="stable")[: min(k, len(conf))]


def ensemble_image(bank: np.ndarray, raters, k: int, m: int) -> np.ndarray:
    """uint8 bank (n, H, W) -> uint8 (H, W): the pixel mean of the m most-voted samples."""
    picks = [rater_picks(predict_digits(r, bank), k) for r in raters]
    chosen = most_voted(picks, len(bank), m)
    return mean_u8(bank[chosen][None])[0]


def ambiguous_mask(judge_probs_bicubic: np.ndarray, labels: np.ndarray, confidence: float) -> np.ndarray:
    """Images where the judge misreads bicubic or reads it with confidence below ``confidence``."""
    return (judge_probs_bicubic.argmax(1) != labels) | (judge_probs_bicubic.max(1) < confidence)


def _acc(probs: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> float:
    hit = probs.argmax(1) == labels
    if mask is not None:
        hit = hit[mask]
    return float(hit.mean()) if len(hit) else float("nan")


def ambiguity_row(scale: int, method: str, banks: np.ndarray, hr: np.ndarray, lr: np.ndarray, labels: np.ndarray,
                  regression: np.ndarray, bicubic: np.ndarray, raters, judge, k: int, m: int,
                  confidence: float) -> tuple[AmbiguityRow, np.ndarray]:
    """banks uint8 (N_img, n, H, W); regression / bicubic / hr uint8 (N_img, H, W). Returns the row and the
    ensembles (N_img, H, W)."""
    ens = np.stack([ensemble_image(b, raters, k, m) for b in banks])
    p_ens, p_single = predict_digits(judge, ens), predict_digits(judge, banks[:, 0])
    p_reg, p_bic, p_hr = predict_digits(judge, regression), predict_digits(judge, bicubic), predict_digits(judge, hr)
    amb = ambiguous_mask(p_bic, labels, confidence)
    return AmbiguityRow(
        scale=scale, method=method, bank_n=banks.shape[1], images=len(banks), ambiguous_images=int(amb.sum()),
        acc_ensemble=_acc(p_ens, labels), acc_single=_acc(p_single, labels), acc_regression=_acc(p_reg, labels),
        acc_bicubic=_acc(p_bic, labels), acc_hr=_acc(p_hr, labels),
        amb_acc_ensemble=_acc(p_ens, labels, amb), amb_acc_single=_acc(p_single, labels, amb),
        amb_acc_regression=_acc(p_reg, labels, amb), amb_acc_bicubic=_acc(p_bic, labels, amb),
        ensemble_lr_psnr_mean=float(np.mean([lr_psnr(e, im, scale) for e, im in zip(ens, lr)])),
    ), ens
