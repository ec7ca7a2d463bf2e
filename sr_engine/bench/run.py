"""One benchmark run: every method on the same evaluation rows, then ``benchmark.md``, CSVs and PNG plots.

    python -m sr_engine benchmark --quick          # tiny baselines trained on the spot; results/quick/
    python -m sr_engine benchmark                  # the full setting; loads data/baselines/; results/benchmark/

Metrics per method and setting come from :func:`sr_engine.eval.digits.digit_row` (one definition each, see
``sr_engine.metrics``); its digit accuracy is the judge's reading of single samples.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import mnist_canvas
from ..degradation import make_lr
from ..eval.digits import digit_row, eval_subset
from ..eval.judge import predict_digits
from .baselines import load_raters, train_baselines
from .config import BenchConfig, plates_baselines
from .memory import measure
from .methods import FAMILIES, SAMPLERS, Methods, Setting, settings_for, timed
from .plates import run_plates
from .plots import ambiguous_figure
from .raters import ambiguity_row, ambiguous_mask
from .report import write_outputs
from .results import BenchResult, BenchRow


def digit_images(cfg: BenchConfig, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """The benchmark's digits at ``scale``: (HR uint8, labels, LR uint8, bank seeds ``cfg.seed + evaluation row``)."""
    hr, labels, rows = eval_subset(cfg.per_digit, mnist_canvas(scale))
    if cfg.max_images:
        hr, labels, rows = hr[: cfg.max_images], labels[: cfg.max_images], rows[: cfg.max_images]
    return hr, labels, make_lr(hr, scale), [cfg.seed + int(r) for r in rows]


def run_scale(cfg: BenchConfig, scale: int, raters, judge, result: BenchResult, figures: Path) -> None:
    root = cfg.baselines.export_path()
    hr, labels, lr, seeds = digit_images(cfg, scale)
    engine = cfg.engines[scale]
    methods = Methods(scale, engine, root)
    tau_ref = max(cfg.taus)
    memory: dict[str, float] = {}
    if cfg.memory:
        memory, floor = measure(list(FAMILIES), scale, engine, str(root), n=cfg.timing_n, steps=cfg.ref_steps,
                                tau=tau_ref, threads=cfg.threads)
        result.rss_floor_mib = floor
    warm: set[str] = set()
    singles: dict[str, np.ndarray] = {}
    for s in tqdm(settings_for(cfg), desc=f"x{scale} methods", mininterval=5):
        n = 1 if s.deterministic else cfg.sweep_n
        if s.family not in warm:  # the first call of a family pays for lazy initialisation: not timed
            methods.bank(Setting(s.family, steps=1 if s.family in SAMPLERS else 0, tau=s.tau), lr[0], 1, 0)
            warm.add(s.family)
        banks = np.stack([methods.bank(s, im, n, sd) for im, sd in zip(lr, seeds)])
        timing_n = 1 if s.deterministic else cfg.timing_n
        _, secs = timed(partial(methods.bank, s, lr[0], timing_n, cfg.seed), cfg.timing_repeats)
        ev = digit_row(s.label, hr, lr, banks, labels, judge, scale, secs)
        result.rows.append(BenchRow(**asdict(ev), scale=scale, family=s.family, steps=s.steps,
                                    tau=s.tau if s.family == "prior" else float("nan"), nfe=s.nfe,
                                    timing_n=timing_n, peak_rss_mib=memory.get(s.family, float("nan"))))
        if s.deterministic:
            singles[s.family] = banks[:, 0]

    # time against the number of samples, at the reference steps
    stochastic = [Setting("prior", tau=tau_ref)] + [Setting(f, steps=cfg.ref_steps) for f in SAMPLERS]
    for s in stochastic:
        for n in cfg.timing_ns:
            _, secs = timed(partial(methods.bank, s, lr[0], n, cfg.seed), cfg.timing_repeats)
            result.timing.append({"scale": scale, "family": s.family, "steps": s.steps, "n": n, "seconds": secs})

    # ambiguity resolution: raters pick from banks of ambiguity_n at the reference steps
    samples: dict[str, np.ndarray] = {}
    ensembles: dict[str, np.ndarray] = {}
    for s in tqdm(stochastic, desc=f"x{scale} raters", mininterval=5):
        banks = np.stack([methods.bank(s, im, cfg.ambiguity_n, sd) for im, sd in zip(lr, seeds)])
        row, ens = ambiguity_row(scale, s.label, banks, hr, lr, labels, singles["regression"], singles["bicubic"],
                                 raters, judge, cfg.k_picks, cfg.ensemble_size, cfg.ambiguous_confidence)
        result.ambiguity.append(row)
        samples[s.label], ensembles[s.label] = banks[:, :2], ens

    # the figure: up to 4 ambiguous digits (judge on bicubic), the least confident first
    p_bic = predict_digits(judge, singles["bicubic"])
    amb = ambiguous_mask(p_bic, labels, cfg.ambiguous_confidence)
    order = sorted(range(len(hr)), key=lambda i: (not amb[i], p_bic[i].max()))[:4]
    side = hr.shape[-1]
    lr_big = np.repeat(np.repeat(lr[order], scale, 1), scale, 2)[:, :side, :side]
    columns = [("HR", hr[order]), ("LR", lr_big), ("bicubic", singles["bicubic"][order]),
               ("regression", singles["regression"][order])]
    for label, b in samples.items():
        short = label.replace("flow only (prior, ", "prior (").replace(" steps)", " st.)").replace(" step)", " st.)")
        columns += [(f"{short}\nsample {j}", b[order, j]) for j in range(min(2, b.shape[1]))]
        if label.startswith("kernel-strict"):
            columns.append((f"{short}\nrater ensemble", ensembles[label][order]))
    titles = [f"true {labels[i]}, bicubic\nread {p_bic[i].argmax()} ({p_bic[i].max():.2f})" for i in order]
    result.files[f"ambiguous_x{scale}"] = ambiguous_figure(columns, titles, figures / f"ambiguous_x{scale}.png")


def _one_unit(cfg: BenchConfig, unit: tuple[str, int]):
    """One unit of work (what a worker process of ``jobs > 1`` returns): ("mnist", scale) -> a BenchResult with
    every method at that scale; ("plates", 4) -> the plates section's PlateResult (its files written)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if unit[0] == "plates":
        return run_plates(cfg)
    raters, judge = load_raters(cfg.baselines.export_path())
    result = BenchResult(rows=[], ambiguity=[], timing=[])
    run_scale(cfg, unit[1], raters, judge, result, Path(cfg.out))
    return result


def run_benchmark(cfg: BenchConfig) -> BenchResult:
    """Run every method at every scale of ``cfg`` (and the plates section when ``cfg.domains`` names it) and write
    the results folder ``cfg.out``. With ``cfg.jobs`` > 1 the units (each scale, the plates) run in that many worker
    processes (each with ``cfg.threads`` torch threads); the figures are the same as one after the other, the wall
    times are then measured beside the other units' work."""
    t0 = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(cfg.domains) - {"mnist", "plates"}
    if unknown:
        raise ValueError(f"unknown benchmark domains {sorted(unknown)}; expected mnist and/or plates")
    units = [("mnist", s) for s in cfg.scales] if "mnist" in cfg.domains else []
    units += [("plates", 4)] if "plates" in cfg.domains and cfg.plates else []
    if cfg.train_baselines:
        if "mnist" in cfg.domains:
            train_baselines(cfg.baselines)
        if ("plates", 4) in units:
            train_baselines(plates_baselines(cfg.baselines), ("regression", "pixel-ddpm"), domain="plates")
    result = BenchResult(rows=[], ambiguity=[], timing=[])
    pending = list(units)

    def merge(unit, part) -> None:  # each unit's results are written as soon as it is done
        pending.remove(unit)
        result.files.update(part.files)
        if unit[0] == "plates":
            result.plates = part
        else:
            result.rows += part.rows
            result.ambiguity += part.ambiguity
            result.timing += part.timing
            if part.rss_floor_mib == part.rss_floor_mib:
                result.rss_floor_mib = part.rss_floor_mib
            for lst in (result.rows, result.ambiguity, result.timing):  # scales in order, whichever ends first
                lst.sort(key=lambda r: r["scale"] if isinstance(r, dict) else r.scale)
        if result.rows:
            write_outputs(cfg, result, time.perf_counter() - t0, pending)

    if cfg.jobs > 1 and len(units) > 1:
        with ProcessPoolExecutor(min(cfg.jobs, len(units)), mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_one_unit, cfg, u): u for u in units}
            for fut in as_completed(futures):
                merge(futures[fut], fut.result())
    else:
        for u in units:
            merge(u, _one_unit(cfg, u))
    return result
