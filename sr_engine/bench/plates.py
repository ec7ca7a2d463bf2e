"""The benchmark's plates section: the same methods on the fixed evaluation plates (held-out fonts and strings,
:mod:`sr_engine.plates`), at x4, with the project's plate readers as judge and simulated raters.

    python -m sr_engine benchmark --domains plates       # only this section: results/benchmark/plates*.{md,csv,png}

Methods as for the digits (``methods.FAMILIES``): bicubic, the L2 regression net and the SR3-style pixel DDPM
(with and without DDNM's projection) trained on crops of the training plates (``x4/plates-*.pt``), the
plates-x4 engine's flow alone at a few temperatures and its kernel-space sampler in flow and strict mode.

Reading: the judge (``data/readers/plates-reader.pt``, trained on HR training renders) reads every output;
character accuracy = 1 - edit distance / characters, plate accuracy = the whole string right. Ambiguity
resolution: the simulated raters (``rater-*.pt``, other seeds and renders) each pick the k samples they read
most confidently from a bank, the m most-voted are averaged, the judge reads that ensemble. The ambiguous
subset is fixed in advance: the half of the plates whose bicubic upsampling the judge reads with the lowest
confidence (best-path log-probability; at x4 the judge misreads nearly every bicubic plate, so "bicubic wrong"
would select them all).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..evaluate import make_lr, pct
from ..evaluate_plates import PlateEvalRow, load_plate_readers, picked_ensemble, plate_row
from ..metrics import lr_psnr
from ..plates import eval_plates
from ..reader import char_accuracy, plate_accuracy, read_plates
from .config import BenchConfig
from .methods import SAMPLERS, Methods, Setting

SCALE = 4  # the plates engine's scale


@dataclass
class PlateBenchRow(PlateEvalRow):
    """One method at one setting on the plates (PlateEvalRow's metrics, then these)."""

    scale: int
    family: str
    steps: int
    tau: float
    nfe: int
    timing_n: int


@dataclass
class PlateAmbiguityRow:
    method: str  # whose bank the raters pick from
    bank_n: int
    images: int
    ambiguous_images: int
    char_ensemble: float  # the judge's character accuracy on the raters' ensemble
    char_single: float  # ... on one random sample of the bank (its first)
    char_regression: float
    char_bicubic: float
    char_hr: float
    plate_ensemble: float  # whole plates right
    plate_single: float
    plate_regression: float
    plate_bicubic: float
    plate_hr: float
    amb_char_ensemble: float  # character accuracy on the ambiguous subset
    amb_char_single: float
    amb_char_regression: float
    amb_char_bicubic: float
    ensemble_lr_psnr_mean: float  # LR-PSNR of the ensembles (exact = 100 dB)


@dataclass
class PlateResult:
    rows: list[PlateBenchRow]
    ambiguity: list[PlateAmbiguityRow]
    files: dict


def _char(pred: list[str], truth: list[str], mask: np.ndarray | None = None) -> float:
    if mask is not None:
        pred = [p for p, k in zip(pred, mask) if k]
        truth = [t for t, k in zip(truth, mask) if k]
    return char_accuracy(pred, truth) if truth else float("nan")


def run_plates(cfg: BenchConfig) -> PlateResult:
    """Every method on the first ``cfg.plates`` evaluation plates; writes the plates files into ``cfg.out``."""
    from .run import _timed, settings_for

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ev = eval_plates()
    hr, texts = ev.images[: cfg.plates], list(ev.texts[: cfg.plates])
    lr = make_lr(hr, SCALE)
    judge, raters = load_plate_readers(cfg.readers or None)
    if not raters:
        raise FileNotFoundError("no simulated plate raters (rater-*.pt) beside the plate reader")
    methods = Methods(SCALE, cfg.plates_engine, cfg.baselines.export_path(), domain="plates")
    rows: list[PlateBenchRow] = []
    singles: dict[str, np.ndarray] = {}
    warm: set[str] = set()
    for s in tqdm(settings_for(cfg), desc="plates methods", mininterval=5):
        n = 1 if s.deterministic else cfg.plates_sweep_n
        if s.family not in warm:  # lazy initialisation is not timed
            methods.bank(Setting(s.family, steps=1 if s.family in SAMPLERS else 0, tau=s.tau), lr[0], 1, 0)
            warm.add(s.family)
        banks = np.stack([methods.bank(s, l, n, cfg.seed + i) for i, l in enumerate(lr)])
        timing_n = 1 if s.deterministic else cfg.timing_n
        _, secs = _timed(lambda: methods.bank(s, lr[0], timing_n, cfg.seed), cfg.plates_timing_repeats)
        r = plate_row(s.label, hr, lr, banks, texts, judge, None, SCALE, secs)
        rows.append(PlateBenchRow(**asdict(r), scale=SCALE, family=s.family, steps=s.steps,
                                  tau=s.tau if s.family == "prior" else float("nan"), nfe=s.nfe, timing_n=timing_n))
        if s.deterministic:
            singles[s.family] = banks[:, 0]

    # ambiguity resolution: the raters pick from banks of ambiguity_n at the reference steps
    bic_read, bic_conf = read_plates(judge, singles["bicubic"])
    reg_read, _ = read_plates(judge, singles["regression"])
    hr_read, _ = read_plates(judge, hr)
    amb = bic_conf <= np.median(bic_conf)
    stochastic = [Setting("prior", tau=max(cfg.taus))] + [Setting(f, steps=cfg.ref_steps) for f in SAMPLERS]
    ambiguity, samples, ensembles = [], {}, {}
    for s in tqdm(stochastic, desc="plates raters", mininterval=5):
        banks = np.stack([methods.bank(s, l, cfg.ambiguity_n, cfg.seed + i) for i, l in enumerate(lr)])
        ens = np.stack([picked_ensemble(b, raters, cfg.k_picks, cfg.ensemble_size) for b in banks])
        ens_read, _ = read_plates(judge, ens)
        one_read, _ = read_plates(judge, banks[:, 0])
        ambiguity.append(PlateAmbiguityRow(
            method=s.label, bank_n=cfg.ambiguity_n, images=len(hr), ambiguous_images=int(amb.sum()),
            char_ensemble=_char(ens_read, texts), char_single=_char(one_read, texts),
            char_regression=_char(reg_read, texts), char_bicubic=_char(bic_read, texts),
            char_hr=_char(hr_read, texts), plate_ensemble=plate_accuracy(ens_read, texts),
            plate_single=plate_accuracy(one_read, texts), plate_regression=plate_accuracy(reg_read, texts),
            plate_bicubic=plate_accuracy(bic_read, texts), plate_hr=plate_accuracy(hr_read, texts),
            amb_char_ensemble=_char(ens_read, texts, amb), amb_char_single=_char(one_read, texts, amb),
            amb_char_regression=_char(reg_read, texts, amb), amb_char_bicubic=_char(bic_read, texts, amb),
            ensemble_lr_psnr_mean=float(np.mean([lr_psnr(e, l, SCALE) for e, l in zip(ens, lr)]))))
        samples[s.label], ensembles[s.label] = banks[:, 0], ens

    files = write_plates(cfg, rows, ambiguity, hr, lr, texts, singles, samples, ensembles, bic_read, bic_conf)
    return PlateResult(rows, ambiguity, files)


def write_plates(cfg, rows, ambiguity, hr, lr, texts, singles, samples, ensembles, bic_read, bic_conf) -> dict:
    from .plots import plates_figure, steps_tradeoff

    out = Path(cfg.out)
    df = pd.DataFrame([asdict(r) for r in rows])
    first = ["scale", "family", "method", "steps", "tau", "nfe"]
    df = df[first + [c for c in df.columns if c not in first]]
    files = {"plates_metrics_csv": out / "plates_metrics.csv", "plates_ambiguity_csv": out / "plates_ambiguity.csv"}
    df.to_csv(files["plates_metrics_csv"], index=False)
    pd.DataFrame([asdict(r) for r in ambiguity]).to_csv(files["plates_ambiguity_csv"], index=False)
    files["plates_steps_tradeoff"] = steps_tradeoff(df, out / "plates_steps_tradeoff.png", prefix="plates ")

    # the figure: the 4 plates whose bicubic image the judge reads least confidently
    order = list(np.argsort(bic_conf, kind="stable")[:4])
    lr_big = np.repeat(np.repeat(lr[order], SCALE, 1), SCALE, 2)
    panels = [("HR", hr[order]), ("LR (nearest)", lr_big), ("bicubic", singles["bicubic"][order]),
              ("regression", singles["regression"][order])]
    for label, one in samples.items():
        panels.append((f"{label}: one sample", one[order]))
        if label.startswith("kernel-strict"):
            panels.append((f"{label}: raters' ensemble", ensembles[label][order]))
    titles = [f"true {texts[i]}\nbicubic read {bic_read[i] or '-'}" for i in order]
    files["ambiguous_plates"] = plates_figure(panels, titles, out / "ambiguous_plates.png")
    md = out / "plates.md"
    md.write_text("\n".join(["# Benchmark: plates (x4)", "", plates_markdown(cfg, rows, ambiguity)]) + "\n")
    files["plates_markdown"] = md
    return files


def plates_markdown(cfg: BenchConfig, rows: list[PlateBenchRow], ambiguity: list[PlateAmbiguityRow]) -> str:
    """The plates section of ``benchmark.md`` (also written alone as ``plates.md``)."""
    n_img = rows[0].images if rows else 0
    lines = [f"{n_img} evaluation plates (the first {cfg.plates} of `eval_plates()`: held-out fonts and strings), "
             f"engine `{cfg.plates_engine}`, {cfg.plates_sweep_n}-sample banks in the step sweep, DDIM for every "
             "sampler; the judge is the plate reader `data/readers/plates-reader.pt`.", "",
             "| method | NFE | samples / image | PSNR single | SSIM single | PSNR bank mean | LR-PSNR mean | worst | "
             f">= 45 dB | exact | cons. MSE x1e-5 | diversity | char acc. single | plate acc. single | "
             f"char acc. bank mean | s / bank (n={cfg.timing_n}) |", "|" + "---|" * 16]
    for r in rows:
        t = f"{r.seconds_per_bank:.3f}" + (" (1 image)" if r.timing_n == 1 else "")
        lines.append(f"| {r.method} | {r.nfe} | {r.samples // max(r.images, 1)} | {r.psnr_single:.2f} | "
                     f"{r.ssim_single:.3f} | {r.psnr_mean_of_bank:.2f} | {r.lr_psnr_mean:.2f} | {r.lr_psnr_worst:.2f} | "
                     f"{pct(r.share_consistent)} | {pct(r.share_exact)} | {r.consistency_mse_1e5:.3f} | "
                     f"{r.diversity:.4f} | {pct(r.char_acc_single)} | {pct(r.plate_acc_single)} | "
                     f"{pct(r.char_acc_bank_mean)} | {t} |")
    lines += ["", f"Ambiguity resolution ({cfg.ambiguity_n}-sample banks at {cfg.ref_steps} steps, k = {cfg.k_picks} "
              f"picks per rater, m = {cfg.ensemble_size} most-voted averaged; character accuracy, whole plates in "
              "brackets; 'amb.' = the half of the plates whose bicubic image the judge reads least confidently):", "",
              "| raters pick from | ensemble | single sample | regression | bicubic | HR | ens. (amb.) | "
              "single (amb.) | regression (amb.) | bicubic (amb.) | ens. LR-PSNR |", "|" + "---|" * 11]
    for a in ambiguity:
        lines.append(f"| {a.method} | {pct(a.char_ensemble)} ({pct(a.plate_ensemble)}) | {pct(a.char_single)} "
                     f"({pct(a.plate_single)}) | {pct(a.char_regression)} ({pct(a.plate_regression)}) | "
                     f"{pct(a.char_bicubic)} ({pct(a.plate_bicubic)}) | {pct(a.char_hr)} ({pct(a.plate_hr)}) | "
                     f"{pct(a.amb_char_ensemble)} | {pct(a.amb_char_single)} | {pct(a.amb_char_regression)} | "
                     f"{pct(a.amb_char_bicubic)} | {a.ensemble_lr_psnr_mean:.2f} |")
    lines += ["", f"s / bank: wall time of one {cfg.timing_n}-sample bank for one plate after a warm-up call, "
              + ("one run" if cfg.plates_timing_repeats == 1 else f"median of {cfg.plates_timing_repeats} runs")
              + " (one-answer methods: one plate).", "", "Plots: `plates_steps_tradeoff.png`, `ambiguous_plates.png`."]
    return "\n".join(lines)
