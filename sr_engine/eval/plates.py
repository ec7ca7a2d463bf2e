"""Evaluation of a plates model on the fixed evaluation plates (held-out fonts and strings,
:mod:`sr_engine.plates`): the library behind
``python -m sr_engine evaluate --model plates-x4 --plates 100 --n 64 --steps 8 --out results/eval-plates-x4``.

Per method: LR-PSNR (mean with exact = 100 dB, median, worst, share >= 45 dB, share exact), consistency MSE
(x 1e-5), PSNR / SSIM of single samples and of the bank mean, diversity, and what the project's plate reader
(the judge, trained on HR training renders only) reads: character accuracy (1 - edit distance / characters) and
whole-plate accuracy of single samples, of the bank mean and of the *picked ensemble*: simulated raters (readers
trained on other renders and seeds) each pick the k samples they read most confidently, and the m most-voted
samples are averaged (approval count, ties by Borda score then index, as the app). Rows for HR, bicubic
upsampling and, when one is given, a regression baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import data_dir
from ..degradation import bicubic_up, make_lr
from ..engines.registry import load_engine
from ..ensemble import most_voted
from ..models.regression import load_regression_file
from ..plates import eval_plates
from .figures import enlarge_nearest, save_tile_rows
from .reader import char_accuracy, load_reader, plate_accuracy, read_plates
from .tables import BANK_HEAD, BankRow, bank_cells, bank_figures, mean_u8, pct


@dataclass
class PlateEvalRow(BankRow):
    char_acc_single: float  # the judge on single samples
    plate_acc_single: float
    char_acc_bank_mean: float  # the judge on the pixel mean of the whole bank
    plate_acc_bank_mean: float
    char_acc_picked: float  # the judge on the simulated raters' picked ensemble (NaN: not a bank)
    plate_acc_picked: float
    seconds_per_bank: float


def readers_dir() -> Path:
    return data_dir() / "readers"


def load_plate_readers(root: str | Path | None = None):
    """(judge, [simulated raters]) from ``data/readers/``."""
    root = Path(root) if root else readers_dir()
    judge = root / "plates-reader.pt"
    if not judge.is_file():
        raise FileNotFoundError(f"plate reader {judge} not found; run `python -m sr_engine train --stage reader`")
    raters = [load_reader(p) for p in sorted(root.glob("rater-*.pt"))]
    return load_reader(judge), raters


def picked_ensemble(bank: np.ndarray, raters, k: int, m: int) -> np.ndarray:
    """uint8 bank (n, H, W) -> uint8 (H, W): each rater picks the k samples it reads most confidently (highest
    best-path log-probability), the m most-voted are averaged."""
    picks = []
    for r in raters:
        _, conf = read_plates(r, bank)
        picks.append(np.argsort(-conf, kind="stable")[: min(k, len(bank))])
    chosen = most_voted(picks, len(bank), m)
    return mean_u8(bank[chosen][None])[0]


def plate_row(method: str, hr: np.ndarray, lr: np.ndarray, banks: np.ndarray, texts: list[str], judge, raters,
              scale: int, seconds: float, k: int = 5, m: int = 5) -> PlateEvalRow:
    """banks: uint8 (N_img, n, H, W); the picked ensemble is computed when n > 1 and raters are given."""
    n = banks.shape[1]
    means = mean_u8(banks)
    single, _ = read_plates(judge, banks.reshape(-1, *banks.shape[2:]))
    truth_rep = [t for t in texts for _ in range(n)]
    mean_read, _ = read_plates(judge, means)
    if n > 1 and raters:
        picked = np.stack([picked_ensemble(b, raters, k, m) for b in banks])
        picked_read, _ = read_plates(judge, picked)
        ca_p, pa_p = char_accuracy(picked_read, texts), plate_accuracy(picked_read, texts)
    else:
        ca_p = pa_p = float("nan")
    return PlateEvalRow(
        method=method, **bank_figures(banks, hr, lr, scale),
        char_acc_single=char_accuracy(single, truth_rep), plate_acc_single=plate_accuracy(single, truth_rep),
        char_acc_bank_mean=char_accuracy(mean_read, texts), plate_acc_bank_mean=plate_accuracy(mean_read, texts),
        char_acc_picked=ca_p, plate_acc_picked=pa_p, seconds_per_bank=seconds,
    )


def to_markdown(rows: list[PlateEvalRow]) -> str:
    lines = [f"| method | samples | {BANK_HEAD} | char acc. single | plate acc. single | char acc. bank mean | "
             "char acc. picked | plate acc. picked | s / bank |", "|" + "---|" * 19]
    for r in rows:  # NaN accuracies (n/a): rows that are not a bank
        lines.append(f"| {r.method} | {r.samples} | {bank_cells(r)} | {pct(r.char_acc_single)} | "
                     f"{pct(r.plate_acc_single)} | {pct(r.char_acc_bank_mean)} | {pct(r.char_acc_picked)} | "
                     f"{pct(r.plate_acc_picked)} | {r.seconds_per_bank:.3f} |")
    return "\n".join(lines)


def evaluate_plates(model: str, plates: int = 100, n: int = 64, steps: int = 8, modes=("strict", "flow"),
                    seed: int = 0, k: int = 5, m: int = 5, regression: str | None = None) -> list[PlateEvalRow]:
    eng = load_engine(model)
    ev = eval_plates()
    hr, texts = ev.images[:plates], ev.texts[:plates]
    lr = make_lr(hr, eng.scale)
    judge, raters = load_plate_readers()
    out = [plate_row("HR (reference)", hr, lr, hr[:, None], texts, judge, raters, eng.scale, 0.0)]
    t0 = time.perf_counter()
    up = bicubic_up(lr, eng.scale)
    out.append(plate_row("bicubic upsampling", hr, lr, up[:, None], texts, judge, raters, eng.scale,
                         (time.perf_counter() - t0) / len(lr)))
    if regression:
        net = load_regression_file(regression)
        t0 = time.perf_counter()
        with torch.no_grad():
            reg = net(torch.from_numpy(up.astype(np.float32) / 255)[:, None]).clamp(0, 1).numpy()[:, 0]
        reg = np.round(reg * 255).astype(np.uint8)
        out.append(plate_row("regression (L2)", hr, lr, reg[:, None], texts, judge, raters, eng.scale,
                             (time.perf_counter() - t0) / len(lr)))
    for mode in modes:
        banks, secs = [], []
        for i, im in enumerate(tqdm(lr, desc=f"{model} {mode}", mininterval=5)):
            b = eng.sample_bank(im, n=n, steps=steps, seed=seed + i, mode=mode)
            banks.append(b.images)
            secs.append(b.seconds)
        out.append(plate_row(f"{mode} (n={n}, {steps} steps)", hr, lr, np.stack(banks), texts, judge, raters,
                             eng.scale, float(np.median(secs)), k, m))
    return out


def plates_figure(model: str, path: str | Path, count: int = 6, n: int = 6, steps: int = 8, seed: int = 0,
                  zoom: int = 2) -> Path:
    """A PNG, one evaluation plate per row: HR | LR (nearest) | bicubic | n strict samples | bank mean of 64."""
    eng = load_engine(model)
    hr = eval_plates().images[:count]
    lr = make_lr(hr, eng.scale)
    up = bicubic_up(lr, eng.scale)
    rows = []
    for i, (h, im, u) in enumerate(zip(hr, lr, up)):
        bank = eng.sample_bank(im, n=64, steps=steps, seed=seed + i)
        rows.append([h, enlarge_nearest(im, h.shape), u, *bank.images[:n], mean_u8(bank.images[None])[0]])
    return save_tile_rows(rows, path, zoom)
