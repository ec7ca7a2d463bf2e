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

from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..degradation import make_lr
from ..eval.plates import load_plate_readers, picked_ensemble, plate_row
from ..eval.reader import char_accuracy, plate_accuracy, read_plates
from ..metrics import lr_psnr
from ..plates import eval_plates
from .config import BenchConfig
from .methods import SAMPLERS, Methods, Setting, settings_for, timed
from .plots import plates_figure, steps_tradeoff
from .report import plates_markdown
from .results import PlateAmbiguityRow, PlateBenchRow, PlateResult

SCALE = 4  # the plates engine's scale


def _char(pred: list[str], truth: list[str], mask: np.ndarray | None = None) -> float:
    if mask is not None:
        pred = [p for p, k in zip(pred, mask) if k]
        truth = [t for t, k in zip(truth, mask) if k]
    return char_accuracy(pred, truth) if truth else float("nan")


def plate_images(cfg: BenchConfig) -> tuple[np.ndarray, list[str], np.ndarray, list[int]]:
    """The benchmark's plates: the first ``cfg.plates`` evaluation plates as (HR uint8, strings, LR uint8 at x4,
    bank seeds ``cfg.seed + index``)."""
    ev = eval_plates()
    hr = ev.images[: cfg.plates]
    return hr, list(ev.texts[: cfg.plates]), make_lr(hr, SCALE), [cfg.seed + i for i in range(len(hr))]


def run_plates(cfg: BenchConfig) -> PlateResult:
    """Every method on the first ``cfg.plates`` evaluation plates; writes the plates files into ``cfg.out``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    hr, texts, lr, seeds = plate_images(cfg)
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
        banks = np.stack([methods.bank(s, im, n, sd) for im, sd in zip(lr, seeds)])
        timing_n = 1 if s.deterministic else cfg.timing_n
        _, secs = timed(partial(methods.bank, s, lr[0], timing_n, cfg.seed), cfg.plates_timing_repeats)
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
        banks = np.stack([methods.bank(s, im, cfg.ambiguity_n, sd) for im, sd in zip(lr, seeds)])
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
            ensemble_lr_psnr_mean=float(np.mean([lr_psnr(e, im, SCALE) for e, im in zip(ens, lr)]))))
        samples[s.label], ensembles[s.label] = banks[:, 0], ens

    files = write_plates(cfg, rows, ambiguity, hr, lr, texts, singles, samples, ensembles, bic_read, bic_conf)
    return PlateResult(rows, ambiguity, files)


def write_plates(cfg, rows, ambiguity, hr, lr, texts, singles, samples, ensembles, bic_read, bic_conf) -> dict:
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
