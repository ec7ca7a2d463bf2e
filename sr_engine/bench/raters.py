"""Ambiguity resolution with simulated raters (the question of the LDM-SS paper).

Each rater (a digit classifier trained on training half 0) picks, from one image's bank, its ``k`` most
confident samples (highest top-class probability, as a rater picks the most plausible ones), ranked. The
``m`` most-voted samples (approval count; ties broken by Borda score, then sample index, as the app's
aggregation) are averaged into the ensemble. The judge (trained on training half 1) then reads the ensemble,
the bank's first sample (a random draw: samples are independent), the regression output and the bicubic image.

The ambiguous subset is fixed before looking at any method's output: the images whose bicubic upsampling the
judge misreads or reads with confidence below ``ambiguous_confidence`` (0.5, set in advance, not tuned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..classifier import predict_digits


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


def most_voted(picks: list[np.ndarray], n: int, m: int) -> np.ndarray:
    """The m most-voted of n samples: approval count, then Borda score (k - rank summed over raters), then
    the lower sample index."""
    approvals, borda = np.zeros(n, int), np.zeros(n, int)
    for p in picks:
        approvals[p] += 1
        borda[p] += len(p) - np.arange(len(p))
    order = sorted(range(n), key=lambda i: (-approvals[i], -borda[i], i))
    return np.array(order[: min(m, n)])


def ensemble_image(bank: np.ndarray, raters, k: int, m: int) -> np.ndarray:
    """uint8 bank (n, H, W) -> uint8 (H, W): the pixel mean of the m most-voted samples."""
    picks = [rater_picks(predict_digits(r, bank), k) for r in raters]
    chosen = most_voted(picks, len(bank), m)
    return np.round(bank[chosen].astype(np.float64).mean(0)).astype(np.uint8)


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
    from ..metrics import lr_psnr

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
        ensemble_lr_psnr_mean=float(np.mean([lr_psnr(e, l, scale) for e, l in zip(ens, lr)])),
    ), ens


def ambiguity_markdown(rows: list[AmbiguityRow]) -> str:
    pct = lambda v: "n/a" if v != v else f"{100 * v:.1f}%"  # noqa: E731  (NaN: empty subset)
    lines = ["| scale | raters pick from | bank | images | ambiguous | ensemble | single sample | regression | "
             "bicubic | HR | ens. (amb.) | single (amb.) | regression (amb.) | bicubic (amb.) | ens. LR-PSNR |",
             "|" + "---|" * 15]
    for r in rows:
        lines.append(f"| x{r.scale} | {r.method} | {r.bank_n} | {r.images} | {r.ambiguous_images} | "
                     f"{pct(r.acc_ensemble)} | {pct(r.acc_single)} | {pct(r.acc_regression)} | "
                     f"{pct(r.acc_bicubic)} | {pct(r.acc_hr)} | {pct(r.amb_acc_ensemble)} | "
                     f"{pct(r.amb_acc_single)} | {pct(r.amb_acc_regression)} | {pct(r.amb_acc_bicubic)} | "
                     f"{r.ensemble_lr_psnr_mean:.2f} |")
    return "\n".join(lines)
