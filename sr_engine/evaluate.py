"""Evaluate a model on the MNIST evaluation rows (row i with i % 500 >= 400), or a plates model on the
evaluation plates (held-out fonts and strings; :mod:`sr_engine.evaluate_plates`).

    python -m sr_engine evaluate --model mnist-x4 --per-digit 20 --n 64 --steps 8 --out results/eval-mnist-x4
    python -m sr_engine evaluate --model plates-x4 --plates 100 --n 64 --steps 8 --out results/eval-plates-x4

Per mode: LR-PSNR (mean with exact = 100 dB, median, worst, share >= 45 dB, share exact), consistency MSE
(x 1e-5), PSNR / SSIM against HR of single samples and of the bank mean, diversity, the share of single samples
in which the project's digit classifier (trained on training rows only) reads the true digit, and the seconds
per bank. Bicubic upsampling and the HR image itself are rows of the same table. Writes ``.md`` and ``.csv``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .bank import load_engine
from .classifier import load_classifier, predict_digits
from .data import data_dir, load_mnist
from .metrics import CONSISTENT_DB, EXACT_DB, consistency_mse, diversity, downscale_255, lr_psnr_batch, psnr, ssim


@dataclass
class BankRow:
    """The columns every evaluation table shares (:func:`bank_figures` computes all but ``method``)."""

    method: str
    images: int
    samples: int
    lr_psnr_mean: float
    lr_psnr_median: float
    lr_psnr_worst: float
    share_consistent: float  # LR-PSNR >= 45 dB
    share_exact: float  # LR-PSNR = 100 (MSE 0 after rounding)
    consistency_mse_1e5: float
    psnr_single: float
    ssim_single: float
    psnr_mean_of_bank: float
    ssim_mean_of_bank: float
    diversity: float


@dataclass
class EvalRow(BankRow):
    digit_accuracy: float  # classifier reads the true digit, single samples
    seconds_per_bank: float


def make_lr(hr: np.ndarray, scale: int, kernel: str = "bicubic") -> np.ndarray:
    """uint8 HR (..., H, W) -> uint8 LR: round(clip(D(HR), 0, 255))."""
    return np.round(np.clip(downscale_255(hr, scale, kernel), 0, 255)).astype(np.uint8)


def bicubic_up(lr: np.ndarray, scale: int) -> np.ndarray:
    """uint8 (N, h, w) -> uint8 (N, h*s, w*s), bicubic interpolation (torch, align_corners=False)."""
    t = torch.from_numpy(lr.astype(np.float32) / 255.0)[:, None]
    up = F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False)
    return np.round(up.clamp(0, 1).numpy()[:, 0] * 255).astype(np.uint8)


def eval_subset(per_digit: int, pad_to: int):
    """The first ``per_digit`` evaluation rows of each digit (a stated, fixed subset)."""
    d = load_mnist("eval", pad_to=pad_to)
    keep = np.concatenate([np.flatnonzero(d.labels == k)[:per_digit] for k in range(10)])
    return d.images[keep], d.labels[keep], d.rows[keep]


def bank_figures(banks: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: int) -> dict:
    """The consistency and fidelity columns of a table row, for banks uint8 (N_img, n, H, W): LR-PSNR mean /
    median / worst / shares, consistency MSE, PSNR / SSIM of single samples and of the bank mean, diversity."""
    n_img, n = banks.shape[:2]
    lrp = np.concatenate([lr_psnr_batch(b, l, scale) for b, l in zip(banks, lr)])
    cmse = [consistency_mse(s, l, scale) for b, l in zip(banks, lr) for s in b]
    means = np.round(banks.astype(np.float64).mean(1)).astype(np.uint8)
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


def _row(method, hr, lr, banks, labels, clf, scale, seconds) -> EvalRow:
    """banks: uint8 (N_img, n, H, W)."""
    probs = predict_digits(clf, banks.reshape(-1, *banks.shape[2:]))
    acc = float((probs.argmax(1) == np.repeat(labels, banks.shape[1])).mean())
    return EvalRow(method=method, **bank_figures(banks, hr, lr, scale), digit_accuracy=acc, seconds_per_bank=seconds)


def pct(v: float) -> str:
    """A share as a percentage; NaN (not measured for this row) as n/a."""
    return "n/a" if v != v else f"{100 * v:.1f}%"


# the columns of bank_figures in every evaluate table (digits and plates), and their cells
BANK_HEAD = ("LR-PSNR mean | median | worst | >= 45 dB | exact | cons. MSE x1e-5 | PSNR single | SSIM single | "
             "PSNR bank mean | SSIM bank mean | diversity")


def bank_cells(r) -> str:
    return (f"{r.lr_psnr_mean:.2f} | {r.lr_psnr_median:.2f} | {r.lr_psnr_worst:.2f} | {pct(r.share_consistent)} | "
            f"{pct(r.share_exact)} | {r.consistency_mse_1e5:.3f} | {r.psnr_single:.2f} | {r.ssim_single:.3f} | "
            f"{r.psnr_mean_of_bank:.2f} | {r.ssim_mean_of_bank:.3f} | {r.diversity:.4f}")


def to_markdown(rows: list[EvalRow]) -> str:
    lines = [f"| method | samples | {BANK_HEAD} | digit acc. | s / bank |", "|" + "---|" * 15]
    for r in rows:
        lines.append(f"| {r.method} | {r.samples} | {bank_cells(r)} | {pct(r.digit_accuracy)} | "
                     f"{r.seconds_per_bank:.3f} |")
    return "\n".join(lines)


def evaluate(model: str, per_digit: int = 20, n: int = 64, steps: int = 8, modes=("strict", "flow", "prior"),
             tau: float = 1.0, seed: int = 0, classifier: str | None = None) -> list[EvalRow]:
    eng = load_engine(model)
    pad_to = eng.flow.config.hr_size[0] if hasattr(eng, "flow") else 28
    hr, labels, rows = eval_subset(per_digit, pad_to)
    lr = make_lr(hr, eng.scale)
    clf = load_classifier(classifier or data_dir() / "classifiers" / "mnist-cnn.pt")
    out = [_row("HR (reference)", hr, lr, hr[:, None], labels, clf, eng.scale, 0.0)]
    t0 = time.perf_counter()
    up = bicubic_up(lr, eng.scale)
    out.append(_row("bicubic upsampling", hr, lr, up[:, None], labels, clf, eng.scale,
                    time.perf_counter() - t0))
    for spec in modes:
        mode, _, t = spec.partition("@")  # "prior@0.6": prior mode at temperature 0.6
        t = float(t) if t else tau
        banks, secs = [], []
        for i, l in enumerate(tqdm(lr, desc=f"{model} {spec}", mininterval=5)):
            b = eng.sample_bank(l, n=n, steps=steps, seed=seed + int(rows[i]), mode=mode, tau=t)
            banks.append(b.images)
            secs.append(b.seconds)
        label = f"{mode} (tau={t:g})" if mode == "prior" else f"{mode} (n={n}, {steps} steps)"
        out.append(_row(label, hr, lr, np.stack(banks), labels, clf, eng.scale, float(np.median(secs))))
    return out


def figure(model: str, path: str | Path, per_digit_index: int = 0, n: int = 8, steps: int = 8, seed: int = 0,
           zoom: int = 3) -> Path:
    """A PNG with one evaluation digit per row: HR | LR (nearest) | bicubic | n strict samples | bank mean of 64."""
    from PIL import Image

    eng = load_engine(model)
    pad_to = eng.flow.config.hr_size[0] if hasattr(eng, "flow") else 28
    hr_all, _, _ = eval_subset(per_digit_index + 1, pad_to)
    hr = hr_all[per_digit_index :: per_digit_index + 1]  # one per digit
    lr = make_lr(hr, eng.scale)
    up = bicubic_up(lr, eng.scale)
    side = hr.shape[-1]
    rows = []
    for h, l, u in zip(hr, lr, up):
        bank = eng.sample_bank(l, n=64, steps=steps, seed=seed)
        mean = np.round(bank.images.astype(np.float64).mean(0)).astype(np.uint8)
        l_big = np.asarray(Image.fromarray(l).resize((side, side), Image.NEAREST))
        rows.append([h, l_big, u, *bank.images[:n], mean])
    return save_tile_rows(rows, path, zoom)


def save_tile_rows(rows: list[list[np.ndarray]], path: str | Path, zoom: int) -> Path:
    """A PNG of uint8 tiles, one list per row, each tile framed in grey, enlarged ``zoom`` times (nearest)."""
    from PIL import Image

    img = Image.fromarray(np.concatenate(
        [np.concatenate([np.pad(t, 1, constant_values=128) for t in tiles], axis=1) for tiles in rows], axis=0))
    img = img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sr_engine evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist-x4")
    p.add_argument("--per-digit", type=int, default=20, help="evaluation rows per digit (max 100)")
    p.add_argument("--plates", type=int, default=100, help="plates models: evaluation plates (max 300)")
    p.add_argument("--regression", default=None, help="plates models: a regression baseline checkpoint to add")
    p.add_argument("--n", type=int, default=64, help="samples per bank")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--modes", default=None,
                   help="comma-separated; prior@T runs prior mode at temperature T")
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write OUT.md and OUT.csv")
    p.add_argument("--figure", default=None, help="also write this PNG: HR | LR | bicubic | 8 samples | mean")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if getattr(load_engine(a.model), "domain", "") == "plates":
        from . import evaluate_plates as ep

        if a.figure:
            print(f"wrote {ep.plates_figure(a.model, a.figure, steps=a.steps, seed=a.seed)}")
        rows = ep.evaluate_plates(a.model, a.plates, a.n, a.steps, tuple((a.modes or "strict,flow").split(",")),
                                  a.seed, regression=a.regression)
        md = ep.to_markdown(rows)
    else:
        if a.figure:
            print(f"wrote {figure(a.model, a.figure, steps=a.steps, seed=a.seed)}")
        rows = evaluate(a.model, a.per_digit, a.n, a.steps,
                        tuple((a.modes or "strict,flow,prior,prior@0.6").split(",")), a.tau, a.seed)
        md = to_markdown(rows)
    print(md)
    if a.out:
        import pandas as pd

        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(md + "\n")
        pd.DataFrame([asdict(r) for r in rows]).to_csv(out.with_suffix(".csv"), index=False)
        print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")
