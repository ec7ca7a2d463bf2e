"""The starting noise's temperature and the scheduler, on training images: does a colder start or another
sampler buy fidelity honestly?

    python -m sr_engine.bench.temperature --model mnist-x4 --rows 50 --taus 1,0.9,0.8,0.7,0.6,0.5
    python -m sr_engine.bench.temperature --model plates-x4 --rows 30 --taus 1,0.8,0.6
    python -m sr_engine.bench.temperature --model plates-x4 --rows 60 --taus 1 --schedulers ddim,ddpm,dpmsolver

Scaling the starting Gaussian by ``tau < 1`` pulls every sample towards the sampler's mean, which raises
single-sample SSIM whether or not the sampler is any better. So each row also gives the bank's **skill** (mean squared
error of a sample against the HR image) and **spread** (mean squared distance between two of its samples,
:func:`sr_engine.metrics.spread_skill`): for a calibrated sampler the HR image is one more draw and the two agree
(skill / spread = 1); above 1 the bank is narrower than its own error, the over-confidence a rater cannot see.
Both samplers of the benchmark's step sweep are measured on the same images and seeds: the kernel DDPM in strict
mode (every sample exact) and the pixel DDPM (:func:`sr_engine.bench.methods.pixel_sample`), each with every
scheduler asked for (DDIM, the benchmark's, by default; ``ddpm`` is ancestral): a scheduler that raises SSIM by
narrowing the bank shows it in the same way as a colder start.

``--pixel-shrinks 0,16`` adds the pixel DDPM's output passed through the Haar shrinkage that a kernel model's strict
mode may apply before its projection (``StrictSettings.shrink_grey``): the like-for-like comparison.

Training rows only (:func:`sr_engine.eval.strict_tuning.training_images`): MNIST's first training rows of each
digit, or training-font plates. Bank ``i`` is seeded ``seed + i``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..degradation import make_lr
from ..engines.registry import load_engine
from ..eval.strict_tuning import training_images
from ..eval.tables import markdown
from ..metrics import background_ssim_loss, spread_skill, ssim
from .config import BenchConfig
from .methods import PIXEL, Methods, Setting

FAMILIES: tuple[str, ...] = ("kernel-strict", "pixel-ddpm")


def temperature_study(model: str, rows: int = 50, n: int = 8, steps: int = 8, taus: Sequence[float] = (1.0, 0.8),
                      families: Sequence[str] = FAMILIES, baselines: str | Path | None = None,
                      seed: int = 1000, schedulers: Sequence[str] = ("ddim",),
                      pixel_shrinks: Sequence[float] = (0.0,)) -> pd.DataFrame:
    """One row per (family, scheduler, tau): single-sample SSIM, skill, spread and their ratio, averaged over
    ``rows`` training images of ``model``'s domain, ``n`` samples each at ``steps`` scheduler steps."""
    if n < 2:
        raise ValueError("the spread needs banks of at least two samples")
    eng = load_engine(model)
    if eng.domain not in ("mnist", "plates"):
        raise ValueError(f"model {model!r} has no known training domain ({eng.domain!r})")
    hr = training_images(eng.domain, eng.scale, rows)
    lr = make_lr(hr, eng.scale)
    dark_ink = eng.domain == "plates"  # dark text on a light plate; digits are light strokes on black
    root = baselines if baselines is not None else BenchConfig().baselines.export_path()
    methods = Methods(eng.scale, eng, root, families=tuple(families), domain=eng.domain)
    settings = [Setting(fam, steps=steps, tau=float(tau), scheduler=sch, shrink=float(g) if fam in PIXEL else 0.0)
                for fam in families for sch in schedulers for tau in taus
                for g in (pixel_shrinks if fam in PIXEL else (0.0,))]  # bad arguments fail here, before sampling
    acc: dict[Setting, list[list[float]]] = {}
    t0 = time.perf_counter()
    for i, (h, y8) in enumerate(tqdm(list(zip(hr, lr)), desc=f"temperature {eng.name}", mininterval=10)):
        for st in settings:
            bank = methods.bank(st, y8, n, seed + i)
            skill, spread = spread_skill(bank, h)
            acc.setdefault(st, []).append([np.mean([ssim(s, h) for s in bank]), skill, spread,
                                           background_ssim_loss(bank, h, dark_ink)])
    seconds = time.perf_counter() - t0
    out = []
    for st, v in acc.items():
        a = np.asarray(v)
        skill, spread = float(a[:, 1].mean()), float(a[:, 2].mean())
        out.append({"model": eng.name, "family": st.family, "scheduler": st.scheduler, "shrink": st.shrink,
                    "steps": steps,
                    "tau": st.tau, "images": len(hr), "n": n,
                    "seed": seed, "ssim_single": float(a[:, 0].mean()), "skill": skill, "spread": spread,
                    "skill_over_spread": skill / spread if spread > 0 else float("inf"),
                    "ssim_loss_background": float(a[:, 3].mean()), "seconds": seconds})
    return pd.DataFrame(out)


def to_markdown(df: pd.DataFrame) -> str:
    head = ["sampler", "scheduler", "tau", "SSIM", "skill (MSE to HR)", "spread (MSE between samples)",
            "skill / spread", "1 - SSIM off strokes"]
    rows = [[r.family + (f" (shrink {r.shrink:g})" if r.shrink else ""), r.scheduler, f"{r.tau:g}",
             f"{r.ssim_single:.4f}", f"{r.skill:.5f}", f"{r.spread:.5f}",
             f"{r.skill_over_spread:.2f}", f"{r.ssim_loss_background:.4f}"] for r in df.itertuples()]
    r0 = df.iloc[0]
    return (f"model {r0.model}: {r0.images} training images x {r0.n} samples, {r0.steps} step"
            f"{'s' if r0.steps != 1 else ''}, banks seeded "
            f"{r0.seed} + image; {r0.seconds:.0f} s. Skill / spread is 1 for a calibrated sampler, above 1 "
            f"over-confident. 1 - SSIM off strokes: the part of a sample's "
            f"1 - SSIM from windows centred more than 2 px from any stroke (metrics.background_ssim_loss).\n\n"
            f"{markdown(head, rows)}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sr_engine.bench.temperature", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a shipped model name or an engine checkpoint path")
    p.add_argument("--rows", type=int, default=50, help="training images (digits: rows // 10 of each)")
    p.add_argument("--n", type=int, default=8, help="samples per bank")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--taus", default="1,0.8", help="comma-separated temperatures")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--schedulers", default="ddim", help="comma-separated: ddim (the benchmark's), dpmsolver, ddpm")
    p.add_argument("--pixel-shrinks", default="0",
                   help="comma-separated grey thresholds of the Haar shrinkage of the pixel DDPM's output (0: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write OUT.md and OUT.csv")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    df = temperature_study(a.model, a.rows, a.n, a.steps, [float(t) for t in a.taus.split(",")],
                           a.families.split(","), schedulers=a.schedulers.split(","),
                           pixel_shrinks=[float(g) for g in a.pixel_shrinks.split(",")])
    md = to_markdown(df)
    print(md)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out.with_suffix(".csv"), index=False)
        args = sys.argv[1:] if argv is None else argv
        out.with_suffix(".md").write_text(f"`python -m sr_engine.bench.temperature {' '.join(args)}`\n\n{md}\n")
        print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
