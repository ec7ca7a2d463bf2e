"""Evaluation of a model on the MNIST evaluation rows (row i with i % 500 >= 400): the library behind
``python -m sr_engine evaluate --model mnist-x4`` (the command lives in :mod:`sr_engine.cli`).

Per mode: LR-PSNR (mean with exact = 100 dB, median, worst, share >= 45 dB, share exact), consistency MSE
(x 1e-5), PSNR / SSIM against HR of single samples and of the bank mean, diversity, the share of single samples
in which the project's digit classifier (:mod:`sr_engine.eval.judge`, trained on training rows only) reads the
true digit, and the seconds per bank. Bicubic upsampling and the HR image itself are rows of the same table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data import data_dir, load_mnist, mnist_canvas
from ..degradation import bicubic_up, make_lr
from ..engines.registry import load_engine
from .figures import enlarge_nearest, save_tile_rows
from .judge import DigitCNN, load_classifier, predict_digits
from .tables import BANK_HEAD, BankRow, bank_cells, bank_figures, mean_u8, pct

log = logging.getLogger(__name__)


@dataclass
class EvalRow(BankRow):
    digit_accuracy: float  # classifier reads the true digit, single samples
    seconds_per_bank: float


def eval_subset(per_digit: int, pad_to: int):
    """The first ``per_digit`` evaluation rows of each digit (a stated, fixed subset): (hr uint8 (N, S, S),
    labels (N,), rows (N,)) on a ``pad_to`` canvas (:func:`sr_engine.data.mnist_canvas`)."""
    d = load_mnist("eval", pad_to=pad_to)
    keep = np.concatenate([np.flatnonzero(d.labels == k)[:per_digit] for k in range(10)])
    return d.images[keep], d.labels[keep], d.rows[keep]


def digit_row(method: str, hr: np.ndarray, lr: np.ndarray, banks: np.ndarray, labels: np.ndarray, clf: DigitCNN,
              scale: int, seconds: float) -> EvalRow:
    """One table row for banks uint8 (N_img, n, H, W); ``clf`` reads the digits of single samples."""
    probs = predict_digits(clf, banks.reshape(-1, *banks.shape[2:]))
    acc = float((probs.argmax(1) == np.repeat(labels, banks.shape[1])).mean())
    return EvalRow(method=method, **bank_figures(banks, hr, lr, scale), digit_accuracy=acc, seconds_per_bank=seconds)


def to_markdown(rows: list[EvalRow]) -> str:
    lines = [f"| method | samples | {BANK_HEAD} | digit acc. | s / bank |", "|" + "---|" * 15]
    for r in rows:
        lines.append(f"| {r.method} | {r.samples} | {bank_cells(r)} | {pct(r.digit_accuracy)} | "
                     f"{r.seconds_per_bank:.3f} |")
    return "\n".join(lines)


def evaluate(model: str, per_digit: int = 20, n: int = 64, steps: int = 8, modes=("strict", "flow", "prior"),
             tau: float = 1.0, seed: int = 0, classifier: str | None = None) -> list[EvalRow]:
    """Every mode of ``modes`` ("prior@0.6": prior mode at temperature 0.6) on the first ``per_digit`` evaluation
    rows of each digit, with the HR and bicubic rows."""
    eng = load_engine(model)
    hr, labels, rows = eval_subset(per_digit, mnist_canvas(eng.scale))
    lr = make_lr(hr, eng.scale)
    clf = load_classifier(classifier or data_dir() / "classifiers" / "mnist-cnn.pt")
    out = [digit_row("HR (reference)", hr, lr, hr[:, None], labels, clf, eng.scale, 0.0)]
    t0 = time.perf_counter()
    up = bicubic_up(lr, eng.scale)
    out.append(digit_row("bicubic upsampling", hr, lr, up[:, None], labels, clf, eng.scale,
                         time.perf_counter() - t0))
    for spec in modes:
        mode, _, t = spec.partition("@")
        t = float(t) if t else tau
        banks, secs = [], []
        for i, im in enumerate(tqdm(lr, desc=f"{model} {spec}", mininterval=5)):
            b = eng.sample_bank(im, n=n, steps=steps, seed=seed + int(rows[i]), mode=mode, tau=t)
            banks.append(b.images)
            secs.append(b.seconds)
        label = f"{mode} (tau={t:g})" if mode == "prior" else f"{mode} (n={n}, {steps} steps)"
        out.append(digit_row(label, hr, lr, np.stack(banks), labels, clf, eng.scale, float(np.median(secs))))
        log.info("%s: %s done", model, label)
    return out


def figure(model: str, path: str | Path, per_digit_index: int = 0, n: int = 8, steps: int = 8, seed: int = 0,
           zoom: int = 3) -> Path:
    """A PNG with one evaluation digit per row: HR | LR (nearest) | bicubic | n strict samples | bank mean of 64."""
    eng = load_engine(model)
    hr_all, _, _ = eval_subset(per_digit_index + 1, mnist_canvas(eng.scale))
    hr = hr_all[per_digit_index :: per_digit_index + 1]  # one per digit
    lr = make_lr(hr, eng.scale)
    up = bicubic_up(lr, eng.scale)
    rows = []
    for h, im, u in zip(hr, lr, up):
        bank = eng.sample_bank(im, n=64, steps=steps, seed=seed)
        rows.append([h, enlarge_nearest(im, h.shape), u, *bank.images[:n], mean_u8(bank.images[None])[0]])
    return save_tile_rows(rows, path, zoom)
