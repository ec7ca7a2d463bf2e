"""The benchmark's report: ``benchmark.md`` (and ``plates.md``), the CSVs and the plots of a run's results.
Nothing here runs a method; :mod:`sr_engine.bench.run` and :mod:`sr_engine.bench.plates` call it."""

from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from ..eval.tables import pct
from ..metrics import CONSISTENT_DB
from .baselines import baseline_name
from .config import BenchConfig
from .plots import steps_tradeoff, time_vs_samples
from .raters import AmbiguityRow
from .results import BenchResult, BenchRow, PlateAmbiguityRow, PlateBenchRow


def _shown(path: Path) -> str:
    """A path as the report prints it: relative to the repository when it lies inside it (the report is committed
    and must not name this machine's folders), else as given."""
    root = Path(__file__).resolve().parents[2]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def metrics_markdown(rows: list[BenchRow], scale: int, timing_n: int) -> str:
    head = ("| method | NFE | samples / image | PSNR single | SSIM single | PSNR bank mean | SSIM bank mean | "
            f"LR-PSNR mean | worst | >= {CONSISTENT_DB:g} dB | exact | cons. MSE x1e-5 | diversity | haze (grey) | "
            f"judge acc. | s / bank (n={timing_n}) | peak RSS + MiB |")
    lines = [head, "|" + "---|" * 17]
    for r in (r for r in rows if r.scale == scale):
        samples = r.samples // max(r.images, 1)
        t = f"{r.seconds_per_bank:.3f}" + (" (1 image)" if r.timing_n == 1 else "")
        mem = "n/a" if r.peak_rss_mib != r.peak_rss_mib else f"{r.peak_rss_mib:.0f}"
        lines.append(f"| {r.method} | {r.nfe} | {samples} | {r.psnr_single:.2f} | {r.ssim_single:.3f} | "
                     f"{r.psnr_mean_of_bank:.2f} | {r.ssim_mean_of_bank:.3f} | {r.lr_psnr_mean:.2f} | "
                     f"{r.lr_psnr_worst:.2f} | {100 * r.share_consistent:.1f}% | {100 * r.share_exact:.1f}% | "
                     f"{r.consistency_mse_1e5:.3f} | {r.diversity:.4f} | {r.haze:.2f} | "
                     f"{100 * r.digit_accuracy:.1f}% | {t} | {mem} |")
    return "\n".join(lines)


def claims_markdown(rows: list, prefix: str = "") -> str:
    """The engine's two claims (every strict sample exact; banks faster than the pixel DDPM's), checked on this
    run's numbers (stated either way); ``rows``: BenchRows or the plates section's rows, ``prefix`` names the
    latter ("plates ")."""
    out = []
    for scale in sorted({r.scale for r in rows}):
        rs = [r for r in rows if r.scale == scale]
        strict = [r for r in rs if r.family == "kernel-strict"]
        others = [r for r in rs if r.family != "kernel-strict"]
        if not strict or not others:
            continue
        s_worst = min(r.lr_psnr_mean for r in strict)
        s_exact = min(r.share_exact for r in strict)
        best = max(others, key=lambda r: r.lr_psnr_mean)
        s_mse = max(r.consistency_mse_1e5 for r in strict)
        ok = s_exact >= 1.0 and s_worst >= best.lr_psnr_mean
        out.append(f"- {prefix}x{scale} consistency: every kernel-strict sample at every step count rounds back to the "
                   f"LR image: {'yes' if s_exact >= 1.0 else 'no'} (lowest share exact {100 * s_exact:.1f}%, lowest "
                   f"LR-PSNR mean {s_worst:.2f} dB); the most consistent other method is {best.method} "
                   f"({best.lr_psnr_mean:.2f} dB, {100 * best.share_exact:.1f}% exact): "
                   f"**{'holds' if ok else 'does not hold'}**. (Kernel-strict's consistency MSE against the clipped "
                   f"LR image, up to {s_mse:.3f} x1e-5, is not the criterion: the 8-bit slab lets D x go below 0 "
                   f"where the LR pixel is 0, as the HR image's own D(HR) does.)")
        for r in strict:
            pix = [p for p in rs if p.family == "pixel-ddpm" and p.steps == r.steps]
            if pix:
                faster = r.seconds_per_bank < pix[0].seconds_per_bank
                out.append(f"- {prefix}x{scale}, {r.steps} steps: kernel-strict {r.seconds_per_bank:.3f} s vs "
                           f"pixel-ddpm {pix[0].seconds_per_bank:.3f} s per {r.timing_n}-sample bank: "
                           f"**{'faster' if faster else 'not faster'}**.")
    return "\n".join(out)


def strict_markdown(rows: list, prefix: str = "") -> str:
    """Kernel-strict against kernel-flow and the pixel DDPM at every step count: single-sample SSIM and PSNR, the
    share of exact samples, background haze (mean grey more than 2 px from any HR stroke) and what the exact
    projection adds to the wall time of one bank (strict minus flow, in ms). ``rows``: BenchRows or the plates
    section's rows; ``prefix`` names the latter ("plates ")."""
    head = ["| setting | steps | SSIM strict / flow / pixel DDPM | PSNR strict / flow / pixel DDPM | exact strict / "
            "flow / pixel DDPM | haze strict / flow / pixel DDPM (grey) | strict - flow ms per bank |",
            "|" + "---|" * 7]
    lines = []
    for scale in sorted({r.scale for r in rows}):
        rs = [r for r in rows if r.scale == scale]
        for r in (r for r in rs if r.family == "kernel-strict"):
            f = next((q for q in rs if q.family == "kernel-flow" and q.steps == r.steps), None)
            p = next((q for q in rs if q.family == "pixel-ddpm" and q.steps == r.steps), None)
            if f is None or p is None:
                continue
            trio = [r, f, p]
            lines.append(f"| {prefix}x{scale} | {r.steps} | " + " / ".join(f"{q.ssim_single:.3f}" for q in trio)
                         + " | " + " / ".join(f"{q.psnr_single:.2f}" for q in trio) + " | "
                         + " / ".join(pct(q.share_exact) for q in trio) + " | "
                         + " / ".join(f"{q.haze:.2f}" for q in trio) + " | "
                         + f"{1e3 * (r.seconds_per_bank - f.seconds_per_bank):+.0f} (n={r.timing_n}) |")
    return "\n".join(head + lines) if lines else ""


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
    units = [(s, "mnist") for s in scales] + ([(4, "plates")] if plates else [])
    lines = []
    for scale, domain in units:
        for kind in ("regression", "pixel-ddpm"):
            path = Path(root) / f"x{scale}" / f"{baseline_name(kind, domain)}.pt"
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
             + f". Baselines from `{_shown(b.export_path())}`:", "",
             baselines_markdown(b.export_path(), scales, result.plates is not None), ""]
    for scale in scales:
        lines += [f"## x{scale}", "", metrics_markdown(result.rows, scale, cfg.timing_n), ""]
    if result.plates is not None:
        lines += ["## Plates (x4)", "", plates_markdown(cfg, result.plates.rows, result.plates.ambiguity), ""]
    claims = claims_markdown(result.rows)
    if result.plates is not None:
        claims += "\n" + claims_markdown(result.plates.rows, "plates ")
    strict = strict_markdown(result.rows)
    if result.plates is not None:
        plate_strict = strict_markdown(result.plates.rows, "plates ")
        strict = strict + "\n" + "\n".join(plate_strict.splitlines()[2:]) if strict else plate_strict
    lines += ["## Checks of the engine's claims", "", claims, "",
              "## Strict against flow and the pixel DDPM", "", strict, "",
              f"## Ambiguity resolution ({cfg.ambiguity_n}-sample banks at {cfg.ref_steps} steps, "
              f"k = {cfg.k_picks} picks per rater, m = {cfg.ensemble_size} most-voted averaged)", "",
              ambiguity_markdown(result.ambiguity), "",
              f"## Wall time against bank size ({cfg.ref_steps} steps; seconds)", "",
              timing_markdown(tdf), "",
              "## Legend", "",
              "- PSNR / SSIM against HR: single samples, and the pixel mean of each bank. LR-PSNR (NTIRE): "
              f"round(D(SR)) vs the LR image on 0..255, exact = 100 dB; '>= {CONSISTENT_DB:g} dB' and 'exact' are "
              "shares of samples. "
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


def ambiguity_markdown(rows: list[AmbiguityRow]) -> str:
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


def plates_markdown(cfg: BenchConfig, rows: list[PlateBenchRow], ambiguity: list[PlateAmbiguityRow]) -> str:
    """The plates section of ``benchmark.md`` (also written alone as ``plates.md``)."""
    n_img = rows[0].images if rows else 0
    lines = [f"{n_img} evaluation plates (the first {cfg.plates} of `eval_plates()`: held-out fonts and strings), "
             f"engine `{cfg.plates_engine}`, {cfg.plates_sweep_n}-sample banks in the step sweep, DDIM for every "
             "sampler; the judge is the plate reader `data/readers/plates-reader.pt`.", "",
             "| method | NFE | samples / image | PSNR single | SSIM single | PSNR bank mean | LR-PSNR mean | worst | "
             f">= {CONSISTENT_DB:g} dB | exact | cons. MSE x1e-5 | diversity | haze (grey) | char acc. single | "
             f"plate acc. single | char acc. bank mean | s / bank (n={cfg.timing_n}) |", "|" + "---|" * 17]
    for r in rows:
        t = f"{r.seconds_per_bank:.3f}" + (" (1 image)" if r.timing_n == 1 else "")
        lines.append(f"| {r.method} | {r.nfe} | {r.samples // max(r.images, 1)} | {r.psnr_single:.2f} | "
                     f"{r.ssim_single:.3f} | {r.psnr_mean_of_bank:.2f} | {r.lr_psnr_mean:.2f} | "
                     f"{r.lr_psnr_worst:.2f} | "
                     f"{pct(r.share_consistent)} | {pct(r.share_exact)} | {r.consistency_mse_1e5:.3f} | "
                     f"{r.diversity:.4f} | {r.haze:.2f} | {pct(r.char_acc_single)} | {pct(r.plate_acc_single)} | "
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


def rerender(out: str | Path, cfg: BenchConfig | None = None) -> Path:
    """Write ``benchmark.md`` and the plots again from a finished run's CSVs in ``out`` (after a fix of the report
    itself; nothing is run). The run's wall time and the interpreter's RSS floor are read from the old
    ``benchmark.md``; ``cfg``: the run's settings (default: the full setting with ``jobs=2``, ``threads=1``)."""
    import re

    from .raters import AmbiguityRow
    from .results import PlateResult

    out = Path(out)
    cfg = cfg or BenchConfig(out=str(out), jobs=2, threads=1)
    old = (out / "benchmark.md").read_text()
    seconds = float(re.search(r"run took (\d+) s", old).group(1))
    floor = re.search(r"interpreter itself peaks at (\d+) MiB", old)
    result = BenchResult(rows=[BenchRow(**r) for r in pd.read_csv(out / "metrics.csv").to_dict("records")],
                         ambiguity=[AmbiguityRow(**r) for r in pd.read_csv(out / "ambiguity.csv").to_dict("records")],
                         timing=pd.read_csv(out / "timing.csv").to_dict("records"),
                         rss_floor_mib=float(floor.group(1)) if floor else float("nan"))
    if (out / "plates_metrics.csv").is_file():
        result.plates = PlateResult(
            rows=[PlateBenchRow(**r) for r in pd.read_csv(out / "plates_metrics.csv").to_dict("records")],
            ambiguity=[PlateAmbiguityRow(**r) for r in pd.read_csv(out / "plates_ambiguity.csv").to_dict("records")],
            files={})
    write_outputs(cfg, result, seconds)
    return out / "benchmark.md"


if __name__ == "__main__":
    import sys

    print(rerender(sys.argv[1] if len(sys.argv) > 1 else "results/benchmark"))
