"""``python -m sr_engine benchmark``: every method on the same evaluation rows; a markdown table, CSVs and plots.

    python -m sr_engine benchmark --quick                       # CI: tiny baselines trained on the spot (minutes)
    python -m sr_engine benchmark train-baselines               # once: data/baselines/ (resumes; hours on a CPU)
    python -m sr_engine benchmark train-baselines --plates     # the plates baselines (x4)
    python -m sr_engine benchmark --jobs 2                      # the full setting; loads data/baselines/
    python -m sr_engine benchmark --domains plates              # only the plates section
    python -m sr_engine benchmark timing --model mnist-x4 --out results/timing-mnist-x4

Parts: ``run`` (the default), ``train-baselines`` (with ``--quick``: the tiny ones), ``timing`` (bank wall
time against samples and steps, one engine). Quick results are not results: they test the pipeline.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

PARTS = ("run", "train-baselines", "timing")


def main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    part = argv.pop(0) if argv and argv[0] in PARTS else "run"
    p = argparse.ArgumentParser(prog=f"python -m sr_engine benchmark {part}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if part == "timing":
        p.add_argument("--model", default="mnist-x4")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--repeats", type=int, default=5)
        p.add_argument("--out", default=None)
        a = p.parse_args(argv)
        from .timing import run_timing

        run_timing(a.model, a.threads, a.repeats, a.out)
        return
    p.add_argument("--quick", action="store_true", help="the CI setting: tiny baselines, tiny subsets")
    p.add_argument("--out", default=None, help="results folder (default results/benchmark, quick: results/quick)")
    p.add_argument("--baselines", default=None,
                   help="baselines folder (default data/baselines; quick: OUT/baselines)")
    p.add_argument("--work-dir", default=None, help="resumable training state (default runs/baselines)")
    p.add_argument("--scales", default=None, help="comma-separated, e.g. 4 or 4,8")
    p.add_argument("--engine", action="append", default=[], metavar="SCALE=MODEL",
                   help="kernel-space engine per scale (a shipped name or a checkpoint path), e.g. 4=mnist-x4")
    p.add_argument("--per-digit", type=int, default=None, help="evaluation rows per digit")
    p.add_argument("--no-memory", action="store_true", help="skip the per-method peak-memory subprocesses")
    p.add_argument("--reg-steps", type=int, default=None, help="regression net training steps (train-baselines)")
    p.add_argument("--ddpm-steps", type=int, default=None, help="pixel DDPM training steps (train-baselines)")
    p.add_argument("--plates", action="store_true",
                   help="train-baselines: the plates baselines (x4, crops of the training plates, batch 32)")
    p.add_argument("--only", choices=["regression", "pixel-ddpm", "raters"], default=None,
                   help="train-baselines: only this part")
    p.add_argument("--device", default="cpu", help="train-baselines: torch device of the nets (cpu, cuda)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="run the scales (and the plates) in this many processes")
    p.add_argument("--domains", default=None,
                   help="comma-separated: mnist (the digits at each scale), plates (the plates section); default both")
    p.add_argument("--plates-images", type=int, default=None, help="evaluation plates of the plates section")
    p.add_argument("--sweep-n", type=int, default=None, help="samples per bank in the step sweeps")
    a = p.parse_args(argv)

    import torch

    from .config import BenchConfig, quick_config

    torch.set_num_threads(a.threads)
    cfg = quick_config(a.out or "results/quick") if a.quick else BenchConfig(out=a.out or "results/benchmark")
    base = cfg.baselines
    if a.baselines:
        base = replace(base, export_dir=a.baselines)
    if a.reg_steps:
        base = replace(base, reg_steps=a.reg_steps)
    if a.ddpm_steps:
        base = replace(base, ddpm_steps=a.ddpm_steps, plates_ddpm_steps=a.ddpm_steps)
    if a.work_dir:
        base = replace(base, work_dir=a.work_dir)
    if a.scales:
        scales = tuple(int(s) for s in a.scales.split(","))
        cfg, base = replace(cfg, scales=scales), replace(base, scales=scales)
    engines = dict(cfg.engines)
    for spec in a.engine:
        s, _, model = spec.partition("=")
        engines[int(s)] = model
    cfg = replace(cfg, baselines=base, engines=engines, threads=a.threads, jobs=a.jobs,
                  memory=cfg.memory and not a.no_memory, per_digit=a.per_digit or cfg.per_digit,
                  plates=cfg.plates if a.plates_images is None else a.plates_images,
                  sweep_n=a.sweep_n or cfg.sweep_n, plates_sweep_n=a.sweep_n or cfg.plates_sweep_n)
    if a.domains:
        cfg = replace(cfg, domains=tuple(d.strip() for d in a.domains.split(",") if d.strip()))

    if part == "train-baselines":
        from .baselines import train_baselines

        base = replace(cfg.baselines, device=a.device)
        if a.plates:
            from .config import plates_baselines

            base = plates_baselines(base)
        parts = (a.only,) if a.only else ("regression", "pixel-ddpm", "raters")
        for path in train_baselines(base, parts, domain="plates" if a.plates else "mnist"):
            print(path)
        return
    from .run import run_benchmark

    res = run_benchmark(cfg)
    md = res.files.get("markdown") or res.files.get("plates_markdown")
    print(md.read_text() if md else "nothing was run (no domain and scale selected)")
    print("wrote", ", ".join(str(f) for f in res.files.values()))
