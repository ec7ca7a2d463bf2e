"""The columns every evaluation table shares: :class:`BankRow`, computed by :func:`bank_figures` (one definition
per metric, :mod:`sr_engine.metrics`), and their markdown cells (:data:`BANK_HEAD`, :func:`bank_cells`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import CONSISTENT_DB, EXACT_DB, consistency_mse, diversity, lr_psnr_batch, psnr, ssim


@dataclass
class BankRow:
    """The columns every evaluation table shares (:func:`bank_figures` computes all but ``method``)."""

    method: str
    images: int
    samples: int
    lr_psnr_mean: float
    lr_psnr_median: float
    lr_psnr_worst: float
    share_consistent: float  # LR-PSNR >= CONSISTENT_DB (45 dB)
    share_exact: float  # LR-PSNR = 100 (MSE 0 after rounding)
    consistency_mse_1e5: float
    psnr_single: float
    ssim_single: float
    psnr_mean_of_bank: float
    ssim_mean_of_bank: float
    diversity: float


def bank_figures(banks: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: int) -> dict:
    """The consistency and fidelity columns of a table row, for banks uint8 (N_img, n, H, W): LR-PSNR mean /
    median / worst / shares, consistency MSE, PSNR / SSIM of single samples and of the bank mean, diversity."""
    n_img, n = banks.shape[:2]
    lrp = np.concatenate([lr_psnr_batch(b, im, scale) for b, im in zip(banks, lr)])
    cmse = [consistency_mse(s, im, scale) for b, im in zip(banks, lr) for s in b]
    means = mean_u8(banks)
    return dict(
        images=n_img, samples=n_img * n,
        lr_psnr_mean=float(lrp.mean()), lr_psnr_median=float(np.median(lrp)), lr_psnr_worst=float(lrp.min()),
        share_consistent=float((lrp >= CONSISTENT_DB).mean()), share_exact=float((lrp >= EXACT_DB).mean()),
        consistency_mse_1e5=float(np.mean(cmse)),
        psnr_single=float(np.mean([psnr(s, h) for b, h in zip(banks, hr) for s in b])),
        ssim_single=float(np.mean([ssim(s, h) for b, h in zip(banks, hr) for s in b])),
        psnr_mean_of_bank=float(np.mean([psnr(m, h) for m, h in zip(means, hr)])),
        ssim_mean_of_bank=float(np.mean([ssim(m, h) for m, h in zip(means, hr)])),
        diversity=float(np.mean([diversity(b) for b in banks])),
    )


def mean_u8(banks: np.ndarray) -> np.ndarray:
    """uint8 banks (N_img, n, H, W) -> uint8 (N_img, H, W): each bank's pixel mean, rounded."""
    return np.round(banks.astype(np.float64).mean(1)).astype(np.uint8)


def pct(v: float) -> str:
    """A share as a percentage; NaN (not measured for this row) as n/a."""
    return "n/a" if v != v else f"{100 * v:.1f}%"


# the columns of bank_figures in every evaluate table (digits and plates), and their cells
BANK_HEAD = (f"LR-PSNR mean | median | worst | >= {CONSISTENT_DB:g} dB | exact | cons. MSE x1e-5 | PSNR single | "
             "SSIM single | PSNR bank mean | SSIM bank mean | diversity")


def bank_cells(r: BankRow) -> str:
    return (f"{r.lr_psnr_mean:.2f} | {r.lr_psnr_median:.2f} | {r.lr_psnr_worst:.2f} | {pct(r.share_consistent)} | "
            f"{pct(r.share_exact)} | {r.consistency_mse_1e5:.3f} | {r.psnr_single:.2f} | {r.ssim_single:.3f} | "
            f"{r.psnr_mean_of_bank:.2f} | {r.ssim_mean_of_bank:.3f} | {r.diversity:.4f}")


def markdown(head: list[str], rows: list[list[str]]) -> str:
    """A markdown table: the header cells, a rule, then one line per row of cells."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
