"""Wall time of a bank on this CPU: the median of ``repeats`` runs after one warm-up, against the number of
samples (1 to 256, 8 steps) and the number of steps (1 to 50, 64 samples), strict mode, DDIM."""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..bank import load_engine
from ..evaluate import eval_subset, make_lr


def _median_seconds(eng, lr, n, steps, repeats) -> float:
    eng.sample_bank(lr, n=n, steps=steps, seed=0)  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        eng.sample_bank(lr, n=n, steps=steps, seed=r + 1)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_timing(model: str, threads: int, repeats: int, out: str | None) -> str:
    torch.set_num_threads(threads)
    eng = load_engine(model)
    pad_to = eng.flow.config.hr_size[0]
    hr, _, _ = eval_subset(1, pad_to)
    lr = make_lr(hr[3], eng.scale)
    lines = [f"model {model}, torch {torch.__version__}, {threads} threads, {platform.processor() or platform.machine()}, "
             f"median of {repeats} runs after a warm-up, strict mode, DDIM", "",
             "| samples | steps | seconds per bank | ms per sample |", "|---|---|---|---|"]
    rows = [(n, 8) for n in (1, 4, 16, 64, 128, 256)] + [(64, s) for s in (1, 2, 4, 16, 50)]
    for n, steps in rows:
        s = _median_seconds(eng, lr, n, steps, repeats if n * steps <= 64 * 16 else max(1, repeats // 2))
        lines.append(f"| {n} | {steps} | {s:.3f} | {1000 * s / n:.1f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).with_suffix(".md").write_text(text + "\n")
    return text
