"""The kernel sampler's step sweep alone, against a full benchmark run: for a kernel DDPM that changed.

    python -m sr_engine.bench.sweep --engine data/checkpoints/mnist-x4.pt --against results/benchmark
    python -m sr_engine.bench.sweep --engine data/checkpoints/plates-x4.pt --against results/benchmark

The same evaluation images, bank sizes, seeds (``seed + row``; plates ``seed + index``), step counts and metric
code (:func:`sr_engine.eval.digits.digit_row`, :func:`sr_engine.eval.plates.plate_row`) as
``python -m sr_engine benchmark``, for the kernel samplers only (``kernel-strict``, ``kernel-flow``). The other
methods' rows are read from the given run's CSV instead of being sampled again: they do not depend on the kernel
engine. No wall times (the full run has them). Evaluation rows only: this measures, it chooses nothing.

``--pixel-shrink G`` also samples the pixel DDPM with its output through the Haar shrinkage that the kernel model's
strict mode applies before its projection (``Setting.shrink``; G its ``StrictSettings.shrink_grey``): the
like-for-like baseline, a column beside the full run's plain pixel DDPM.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..engines.registry import load_engine
from ..eval.digits import digit_row
from ..eval.plates import load_plate_readers, plate_row
from .baselines import load_raters
from .config import BenchConfig
from .methods import Methods, Setting
from .plates import SCALE as PLATES_SCALE
from .plates import plate_images
from .run import digit_images

KERNEL_FAMILIES: tuple[str, ...] = ("kernel-strict", "kernel-flow")
COLUMNS = ("ssim_single", "psnr_single", "share_exact", "haze", "diversity")


def sweep(engine: str, cfg: BenchConfig | None = None, families: tuple[str, ...] = KERNEL_FAMILIES,
          pixel_shrink: float = 0.0) -> pd.DataFrame:
    """One row per (family, steps) of the kernel sampler of ``engine`` on the benchmark's images of its domain;
    columns as the benchmark's ``metrics.csv`` / ``plates_metrics.csv`` (the timing columns are NaN). With
    ``pixel_shrink`` > 0, also the pixel DDPM shrunk at that threshold (family ``pixel-ddpm``, column ``shrink``)."""
    cfg = cfg or BenchConfig()
    eng = load_engine(engine)
    rows = []
    if eng.domain == "plates":
        if eng.scale != PLATES_SCALE:
            raise ValueError(f"the benchmark's plates are x{PLATES_SCALE}; {engine} is x{eng.scale}")
        hr, texts, lr, seeds = plate_images(cfg)
        judge, _ = load_plate_readers(cfg.readers or None)
        n = cfg.plates_sweep_n
    else:
        hr, labels, lr, seeds = digit_images(cfg, eng.scale)
        _, judge = load_raters(cfg.baselines.export_path())
        n = cfg.sweep_n
    runs = list(families) + (["pixel-ddpm"] if pixel_shrink else [])
    methods = Methods(eng.scale, eng, cfg.baselines.export_path(), families=tuple(runs), domain=eng.domain)
    for fam in runs:
        shrink = pixel_shrink if fam == "pixel-ddpm" else 0.0
        for steps in tqdm(cfg.steps, desc=f"{fam} {eng.name}", mininterval=5):
            s = Setting(fam, steps=steps, shrink=shrink)
            banks = np.stack([methods.bank(s, im, n, sd) for im, sd in zip(lr, seeds)])
            if eng.domain == "plates":
                r = plate_row(s.label, hr, lr, banks, texts, judge, None, eng.scale, float("nan"))
            else:
                r = digit_row(s.label, hr, lr, banks, labels, judge, eng.scale, float("nan"))
            rows.append({"scale": eng.scale, "family": fam, "steps": steps, "shrink": shrink, **vars(r)})
    return pd.DataFrame(rows)


def compare(new: pd.DataFrame, against: Path, domain: str, scale: int, label: str = "new") -> str:
    """Markdown: per step count, SSIM / PSNR / haze / diversity of the new kernel-strict rows beside the full
    run's kernel-strict and pixel DDPM rows (and the new shrunk pixel DDPM rows, where the sweep has them)."""
    ref = pd.read_csv(Path(against) / ("plates_metrics.csv" if domain == "plates" else "metrics.csv"))
    ref = ref[ref["scale"] == scale]
    shrunk = new[new["family"] == "pixel-ddpm"].set_index("steps")
    px = f" / pixel DDPM shrunk {shrunk['shrink'].iloc[0]:g}" if len(shrunk) else ""
    lines = [f"| steps | SSIM {label} / run / pixel DDPM{px} | PSNR {label} / run / pixel DDPM{px} | "
             f"haze {label} / run / pixel DDPM{px} (grey) | diversity {label} / run / pixel DDPM{px} | "
             f"exact {label} |",
             "|---|---|---|---|---|---|"]
    def old(fam: str, steps: int, col: str) -> float:
        hit = ref[(ref["family"] == fam) & (ref["steps"] == steps)]
        return float(hit[col].iloc[0]) if len(hit) else float("nan")

    mine = new[new["family"] == "kernel-strict"].set_index("steps")
    for steps, r in mine.iterrows():
        cells = []
        for c, f in (("ssim_single", ".3f"), ("psnr_single", ".2f"), ("haze", ".2f"), ("diversity", ".4f")):
            cell = f"{r[c]:{f}} / {old('kernel-strict', steps, c):{f}} / {old('pixel-ddpm', steps, c):{f}}"
            if len(shrunk):
                cell += f" / {shrunk.loc[steps, c]:{f}}"
            cells.append(cell)
        lines.append(f"| {steps} | " + " | ".join(cells) + f" | {100 * r['share_exact']:.1f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sr_engine.bench.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", required=True, help="a shipped model name or an engine checkpoint path")
    p.add_argument("--against", default="results/benchmark", help="a full benchmark run's folder (its CSVs)")
    p.add_argument("--label", default="new", help="the new rows' name in the table")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--families", default=",".join(KERNEL_FAMILIES),
                   help="comma-separated: kernel-strict, kernel-flow (the table reads the kernel-strict rows)")
    p.add_argument("--pixel-shrink", type=float, default=0.0,
                   help="also the pixel DDPM with its output Haar-shrunk at this threshold (grey; 0: not run)")
    p.add_argument("--out", default=None, help="write OUT.md and OUT.csv")
    a = p.parse_args(argv)
    families = tuple(a.families.split(","))
    if not families or set(families) - set(KERNEL_FAMILIES):
        p.error(f"--families takes {', '.join(KERNEL_FAMILIES)}")
    torch.set_num_threads(a.threads)
    eng = load_engine(a.engine)
    df = sweep(a.engine, families=families, pixel_shrink=a.pixel_shrink)
    md = compare(df, Path(a.against), eng.domain, eng.scale, a.label)
    print(md)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out.with_suffix(".csv"), index=False)
        out.with_suffix(".md").write_text(md + "\n")
        print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
