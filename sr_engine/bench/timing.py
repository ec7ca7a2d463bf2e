"""Wall time of a bank on this CPU: the median of ``repeats`` runs after one warm-up, against the number of
samples (1 to 256, 8 steps) and the number of steps (1 to 50, 64 samples), strict mode, DDIM. For a plates model,
also against the plate's width (64-sample banks, 8 steps): LR 8x16 to 8x64."""

from __future__ import annotations

import logging
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..data import mnist_canvas
from ..degradation import make_lr
from ..engines.registry import load_engine
from ..eval.digits import eval_subset
from ..plates import eval_plates

log = logging.getLogger(__name__)


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
    plates = eng.domain == "plates"
    if plates:
        hr0 = eval_plates().images[0]
    else:
        hr0 = eval_subset(1, mnist_canvas(eng.scale))[0][3]
    lr = make_lr(hr0, eng.scale)
    cpu = platform.processor() or platform.machine()
    lines = [f"model {model}, torch {torch.__version__}, {threads} threads, {cpu}, "
             f"median of {repeats} runs after a warm-up, strict mode, DDIM", "",
             "| samples | steps | seconds per bank | ms per sample |", "|---|---|---|---|"]
    rows = [(n, 8) for n in (1, 4, 16, 64, 128, 256)] + [(64, s) for s in (1, 2, 4, 16, 50)]
    for n, steps in rows:
        s = _median_seconds(eng, lr, n, steps, repeats if n * steps <= 64 * 16 else max(1, repeats // 2))
        lines.append(f"| {n} | {steps} | {s:.3f} | {1000 * s / n:.1f} |")
        log.info("%s", lines[-1])
    if plates:  # how the time grows with the plate's width (the evaluation plate tiled, then cut)
        lines += ["", "| LR size | HR size | samples | steps | seconds per bank |", "|---|---|---|---|---|"]
        wide = np.tile(hr0, (1, 2))
        for w in (16, 32, 48, 64):
            lr_w = make_lr(wide[:, : 4 * w], eng.scale)
            s = _median_seconds(eng, lr_w, 64, 8, repeats)
            lines.append(f"| 8x{w} | 32x{4 * w} | 64 | 8 | {s:.3f} |")
            log.info("%s", lines[-1])
    text = "\n".join(lines)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).with_suffix(".md").write_text(text + "\n")
    return text
