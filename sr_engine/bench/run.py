"""One benchmark run: every method on the same evaluation rows, then ``benchmark.md``, CSVs and PNG plots.

    python -m sr_engine benchmark --quick          # tiny baselines trained on the spot; results/quick/
    python -m sr_engine benchmark                  # the full setting; loads data/baselines/; results/benchmark/

Metrics per method and setting come from :func:`sr_engine.evaluate._row` (one definition each, see
``sr_engine.metrics``); its digit accuracy is the judge's reading of single samples.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..evaluate import EvalRow, _row, eval_subset, make_lr
from .baselines import load_raters, train_baselines
from .config import PAD_TO, BenchConfig
from .memory import measure
from .methods import FAMILIES, SAMPLERS, Methods, Setting
from .plots import ambiguous_figure, steps_tradeoff, time_vs_samples
from .raters import AmbiguityRow, ambiguity_markdown, ambiguity_row, ambiguous_mask


@dataclass
class BenchRow(EvalRow):
    """One method at one setting and scale (EvalRow's metrics, then these)."""

    scale: int
    family: str
    steps: int  # sampling steps (0: not a sampler)
    tau: float  # temperature (prior only)
    nfe: int  # network evaluations per sample (see methods.py)
    timing_n: int  # samples of the timed bank (seconds_per_bank); 1 for one-answer methods
    peak_rss_mib: float  # peak RSS this family adds to a clean interpreter, one bank (memory.py; NaN: not measured)


@dataclass
class BenchResult:
    rows: list[BenchRow]
    ambiguity: list[AmbiguityRow]
    timing: list[dict]  # scale, family, n, seconds
    files: dict[str, Path] = field(default_factory=dict)
    rss_floor_mib: float = float("nan")  # the same process without loading or sampling anything
    plates: object = None  # the plates section's PlateResult (bench.plates), when it ran


def settings_for(cfg: BenchConfig) -> list[Setting]:
    out = [Setting("bicubic"), Setting("regression")] + [Setting("prior", tau=t) for t in cfg.taus]
    return out + [Setting(f, steps=s) for f in SAMPLERS for s in cfg.steps]


def _timed(fn, repeats: int = 1) -> tuple[object, float]:
    """(last result, median wall seconds over ``repeats`` calls)."""
    secs = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t0)
    return out, float(np.median(secs))


def run_scale(cfg: BenchConfig, scale: int, raters, judge, result: BenchResult, figures: Path) -> None:
    root = cfg.baselines.export_path()
    hr, labels, rows = eval_subset(cfg.per_digit, PAD_TO[scale])
    if cfg.max_images:
        hr, labels, rows = hr[: cfg.max_images], labels[: cfg.max_images], rows[: cfg.max_images]
    lr = make_lr(hr, scale)
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
        banks = np.stack([methods.bank(s, l, n, cfg.seed + int(r)) for l, r in zip(lr, rows)])
        timing_n = 1 if s.deterministic else cfg.timing_n
        _, secs = _timed(lambda: methods.bank(s, lr[0], timing_n, cfg.seed), cfg.timing_repeats)
        ev = _row(s.label, hr, lr, banks, labels, judge, scale, secs)
        result.rows.append(BenchRow(**asdict(ev), scale=scale, family=s.family, steps=s.steps,
                                    tau=s.tau if s.family == "prior" else float("nan"), nfe=s.nfe,
                                    timing_n=timing_n, peak_rss_mib=memory.get(s.family, float("nan"))))
        if s.deterministic:
            singles[s.family] = banks[:, 0]

    # time against the number of samples, at the reference steps
    stochastic = [Setting("prior", tau=tau_ref)] + [Setting(f, steps=cfg.ref_steps) for f in SAMPLERS]
    for s in stochastic:
        for n in cfg.timing_ns:
            _, secs = _timed(lambda: methods.bank(s, lr[0], n, cfg.seed), cfg.timing_repeats)
            result.timing.append({"scale": scale, "family": s.family, "steps": s.steps, "n": n, "seconds": secs})

    # ambiguity resolution: raters pick from banks of ambiguity_n at the reference steps
    samples: dict[str, np.ndarray] = {}
    ensembles: dict[str, np.ndarray] = {}
    for s in tqdm(stochastic, desc=f"x{scale} raters", mininterval=5):
        banks = np.stack([methods.bank(s, l, cfg.ambiguity_n, cfg.seed + int(r)) for l, r in zip(lr, rows)])
        row, ens = ambiguity_row(scale, s.label, banks, hr, lr, labels, singles["regression"], singles["bicubic"],
                                 raters, judge, cfg.k_picks, cfg.ensemble_size, cfg.ambiguous_confidence)
        result.ambiguity.append(row)
        samples[s.label], ensembles[s.label] = banks[:, :2], ens

    # the figure: up to 4 ambiguous digits (judge on bicubic), the least confident first
    from ..classifier import predict_digits

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


def metrics_markdown(rows: list[BenchRow], scale: int, timing_n: int) -> str:
    head = ("| method | NFE | samples / image | PSNR single | SSIM single | PSNR bank mean | SSIM bank mean | "
            f"LR-PSNR mean | worst | >= 45 dB | exact | cons. MSE x1e-5 | diversity | judge acc. | s / bank "
            f"(n={timing_n}) | peak RSS + MiB |")
    lines = [head, "|" + "---|" * 16]
    for r in (r for r in rows if r.scale == scale):
        samples = r.samples // max(r.images, 1)
        t = f"{r.seconds_per_bank:.3f}" + (" (1 image)" if r.timing_n == 1 else "")
        mem = "n/a" if r.peak_rss_mib != r.peak_rss_mib else f"{r.peak_rss_mib:.0f}"
        lines.append(f"| {r.method} | {r.nfe} | {samples} | {r.psnr_single:.2f} | {r.ssim_single:.3f} | "
                     f"{r.psnr_mean_of_bank:.2f} | {r.ssim_mean_of_bank:.3f} | {r.lr_psnr_mean:.2f} | "
                     f"{r.lr_psnr_worst:.2f} | {100 * r.share_consistent:.1f}% | {100 * r.share_exact:.1f}% | "
                     f"{r.consistency_mse_1e5:.3f} | {r.diversity:.4f} | {100 * r.digit_accuracy:.1f}% | {t} | "
                     f"{mem} |")
    return "\n".join(lines)


def claims_markdown(rows: list, prefix: str = "") -> str:
    """The issue's two claims, checked on this run's numbers (stated either way); ``rows``: BenchRows or the plates
    section's rows, ``prefix`` names the latter ("plates ")."""
    out = []
    for scale in sorted({r.scale for r in rows}):
        rs = [r for r in rows if r.scale == scale]
        strict = [r for r in rs if r.family == "kernel-strict"]
        others = [r for r in rs if r.family != "kernel-strict"]
        if not strict or not others:
            continue
        s_worst = min(r.lr_psnr_mean for r in strict)
        best = max(others, key=lambda r: r.lr_psnr_mean)
        s_mse = max(r.consistency_mse_1e5 for r in strict)
        best_mse = min(others, key=lambda r: r.consistency_mse_1e5)
        ok = s_worst >= best.lr_psnr_mean and s_mse <= best_mse.consistency_mse_1e5
        out.append(f"- {prefix}x{scale} consistency: kernel-strict's lowest LR-PSNR mean over its steps is {s_worst:.2f} dB "
                   f"and its highest consistency MSE {s_mse:.4f} x1e-5; the most consistent other method is "
                   f"{best.method} ({best.lr_psnr_mean:.2f} dB) / {best_mse.method} "
                   f"({best_mse.consistency_mse_1e5:.4f} x1e-5): **{'holds' if ok else 'does not hold'}**.")
        for r in strict:
            pix = [p for p in rs if p.family == "pixel-ddpm" and p.steps == r.steps]
            if pix:
                faster = r.seconds_per_bank < pix[0].seconds_per_bank
                out.append(f"- {prefix}x{scale}, {r.steps} steps: kernel-strict {r.seconds_per_bank:.3f} s vs pixel-ddpm "
                           f"{pix[0].seconds_per_bank:.3f} s per {r.timing_n}-sample bank: "
                           f"**{'faster' if faster else 'not faster'}**.")
    return "\n".join(out)


def timing_markdown(tdf: pd.DataFrame) -> str:
    if not len(tdf):
        return ""
    ns = sorted(tdf.n.unique())
    lines = ["| scale | method | " + " | ".join(f"n={n}" for n in ns) + " |", "|" + "---|" * (2 + len(ns))]
    for (scale, fam), g in tdf.groupby(["scale", "family"], sort=False):
        secs = dict(zip(g.n, g.seconds))
        lines.append(f"| x{scale} | {fam} | " + " | ".join(f"{secs[n]:.3f}" if n in secs else "" for n in ns) + " |")
    return "\n".join(lines)


def baselines_markdown(root: Path, scales, plates: bool = False) -> str:
    """One line per baseline network as its file records its training (steps, batch, time, device); with
    ``plates`` also the plates section's (x4)."""
    from .baselines import _name

    units = [(s, "mnist") for s in scales] + ([(4, "plates")] if plates else [])
    lines = []
    for scale, domain in units:
        for kind in ("regression", "pixel-ddpm"):
            path = Path(root) / f"x{scale}" / f"{_name(kind, domain)}.pt"
            if not path.is_file():
                continue
            ti = torch.load(path, map_location="cpu", weights_only=True)["train_info"]
            bc = ti["baseline_config"]
            what = f"x{scale} {kind}" if domain == "mnist" else f"plates {kind}"
            lines.append(f"- {what}: {ti['steps']} steps of batch {bc['batch_size']}, "
                         f"{ti['seconds'] / 60:.1f} min on {ti.get('device', 'CPU')} (`{path.name}`)")
    raters = sorted((Path(root) / "raters").glob("rater-*.pt"))
    if raters:
        st = torch.load(raters[0], map_location="cpu", weights_only=True)
        lines.append(f"- simulated raters: {len(raters)} digit classifiers on training half 0, judge on half 1, "
                     f"{st['epochs']} epochs each ({st['n_train']} rows per rater)")
    return "\n".join(lines)


def write_outputs(cfg: BenchConfig, result: BenchResult, seconds: float, pending=()) -> None:
    """Write ``benchmark.md``, the CSVs and the plots of what ``result`` holds so far; ``pending`` names the units
    still running (the header then says the file is partial)."""
    out = Path(cfg.out)
    scales = sorted({r.scale for r in result.rows})
    df = pd.DataFrame([asdict(r) for r in result.rows])
    first = ["scale", "family", "method", "steps", "tau", "nfe"]
    df = df[first + [c for c in df.columns if c not in first]]
    df.to_csv(out / "metrics.csv", index=False)
    pd.DataFrame([asdict(r) for r in result.ambiguity]).to_csv(out / "ambiguity.csv", index=False)
    tdf = pd.DataFrame(result.timing)
    tdf.to_csv(out / "timing.csv", index=False)
    result.files.update({"metrics_csv": out / "metrics.csv", "ambiguity_csv": out / "ambiguity.csv",
                         "timing_csv": out / "timing.csv"})
    result.files["steps_tradeoff"] = steps_tradeoff(df, out / "steps_tradeoff.png")
    result.files["time_vs_samples"] = time_vs_samples(tdf, out / "time_vs_samples.png")

    n_img = result.rows[0].images if result.rows else 0
    if pending:
        todo = ", ".join("plates" if d == "plates" else f"x{s}" for d, s in pending)
        note = f"**Partial: {todo} still running when this file was written.**\n\n"
    else:
        note = ""
    note += ("**Quick/tiny setting: tiny baselines trained for a few hundred steps on the spot, tiny subsets and "
            "banks. These numbers test the pipeline; they are not results.**\n\n" if cfg.name != "full" else "")
    b = cfg.baselines
    lines = [f"# Benchmark ({cfg.name})", "", note + f"{n_img} evaluation images per scale (the first "
             f"{cfg.per_digit} evaluation rows of each digit, `i % 500 >= 400`"
             + (f", first {cfg.max_images} only" if cfg.max_images else "") + f"); {cfg.sweep_n}-sample banks in "
             f"the step sweep; DDIM for every sampler; torch {torch.__version__}, {cfg.threads} thread(s), "
             f"{platform.machine()}" + (f", scales in {cfg.jobs} parallel processes" if cfg.jobs > 1 else "")
             + f"; run took {seconds:.0f} s" + (" so far" if pending else "")
             + f". Baselines from `{b.export_path()}`:", "",
             baselines_markdown(b.export_path(), scales, result.plates is not None), ""]
    for scale in scales:
        lines += [f"## x{scale}", "", metrics_markdown(result.rows, scale, cfg.timing_n), ""]
    if result.plates is not None:
        from .plates import plates_markdown

        lines += ["## Plates (x4)", "", plates_markdown(cfg, result.plates.rows, result.plates.ambiguity), ""]
    claims = claims_markdown(result.rows)
    if result.plates is not None:
        claims += "\n" + claims_markdown(result.plates.rows, "plates ")
    lines += ["## Checks of the issue's claims", "", claims, "",
              f"## Ambiguity resolution ({cfg.ambiguity_n}-sample banks at {cfg.ref_steps} steps, "
              f"k = {cfg.k_picks} picks per rater, m = {cfg.ensemble_size} most-voted averaged)", "",
              ambiguity_markdown(result.ambiguity), "",
              f"## Wall time against bank size ({cfg.ref_steps} steps; seconds)", "",
              timing_markdown(tdf), "",
              "## Legend", "",
              "- PSNR / SSIM against HR: single samples, and the pixel mean of each bank. LR-PSNR (NTIRE): "
              "round(D(SR)) vs the LR image on 0..255, exact = 100 dB; '>= 45 dB' and 'exact' are shares of samples. "
              "Consistency MSE: D(SR) vs LR on [0, 1], x1e-5. Diversity: mean per-pixel std over a bank.",
              "- NFE: network evaluations per sample: kernel sampler = steps UNet calls on the z grid (half the HR "
              "resolution) + 1 inverse flow pass; pixel DDPM = steps UNet calls at full resolution.",
              "- judge acc.: the judge classifier (training half 1) reads the true digit in single samples.",
              f"- s / bank: wall time of one {cfg.timing_n}-sample bank for one image after a warm-up, median of "
              f"{cfg.timing_repeats} (one-answer methods: one image).",
              "- Peak RSS +: what the method adds to the peak resident memory (`ru_maxrss`) of a clean interpreter "
              "that has imported torch and the package: a child forked from it loads that method's networks only "
              f"and makes one such bank at {cfg.ref_steps} steps (peak minus its RSS at the start). The "
              f"interpreter itself peaks at {result.rss_floor_mib:.0f} MiB, shared by every method."
              if cfg.memory else
              "- Peak memory: not measured in this run (n/a).",
              f"- Ambiguous subset: images whose bicubic upsampling the judge misreads or reads with confidence "
              f"< {cfg.ambiguous_confidence} (fixed in advance). 'single sample' = the bank's first sample.",
              "", "Plots: `steps_tradeoff.png`, `time_vs_samples.png`, "
              + ", ".join(f"`ambiguous_x{s}.png`" for s in scales) + "."]
    (out / "benchmark.md").write_text("\n".join(lines) + "\n")
    result.files["markdown"] = out / "benchmark.md"


def _one_unit(cfg: BenchConfig, unit: tuple[str, int]):
    """One unit of work (what a worker process of ``jobs > 1`` returns): ("mnist", scale) -> a BenchResult with
    every method at that scale; ("plates", 4) -> the plates section's PlateResult (its files written)."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if unit[0] == "plates":
        from .plates import run_plates

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
            from .config import plates_baselines

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
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(min(cfg.jobs, len(units)), mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_one_unit, cfg, u): u for u in units}
            for fut in as_completed(futures):
                merge(futures[fut], fut.result())
    else:
        for u in units:
            merge(u, _one_unit(cfg, u))
    return result
