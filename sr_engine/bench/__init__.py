"""``python -m sr_engine benchmark``: benchmarks of the engine. For now the timing part (issue 2):

    python -m sr_engine benchmark timing --model mnist-x4 --out results/timing-mnist-x4
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sr_engine benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["timing"])
    p.add_argument("--model", default="mnist-x4")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    from .timing import run_timing

    run_timing(a.model, a.threads, a.repeats, a.out)
