"""``python -m sr_engine benchmark``: every method on the same evaluation rows; a markdown table, CSVs and plots.

    python -m sr_engine benchmark --quick                       # CI: tiny baselines trained on the spot (minutes)
    python -m sr_engine benchmark train-baselines               # once: data/baselines/ (resumes; hours on a CPU)
    python -m sr_engine benchmark train-baselines --plates --reg-steps 1500   # the plates regression baseline
    python -m sr_engine benchmark                               # the full setting; loads data/baselines/
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
                   help="train-baselines: only the plates regression net (x4, crops of the training plates)")
    p.add_argument("--threads", type=int, default=1)
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
        base = replace(base, ddpm_steps=a.ddpm_steps)
    if a.work_dir:
        base = replace(base, work_dir=a.work_dir)
    if a.scales:
        scales = tuple(int(s) for s in a.scales.split(","))
        cfg, base = replace(cfg, scales=scales), replace(base, scales=scales)
    engines = dict(cfg.engines)
    for spec in a.engine:
        s, _, model = spec.partition("=")
        engines[int(s)] = model
    cfg = replace(cfg, baselines=base, engines=engines, threads=a.threads, memory=cfg.memory and not a.no_memory,
                  per_digit=a.per_digit or cfg.per_digit)

    if part == "train-baselines" and a.plates:
        from .baselines import train_regression

        print(train_regression(replace(cfg.baselines, batch_size=32), 4, domain="plates"))
        return
    if part == "train-baselines":
        from .baselines import train_baselines

        for path in train_baselines(cfg.baselines):
            print(path)
        return
    from .run import run_benchmark

    res = run_benchmark(cfg)
    print(res.files["markdown"].read_text())
    print("wrote", ", ".join(str(f) for f in res.files.values()))
