"""Measure how fast the next task appears once banks exist: the rater's path through ``annotation.tasks.next_task``,
``annotation.views.rater_progress`` and the HTML render (``ui.rate.show_task``), timed after each submission.

    python -m ui.latency [--model mnist-x4] [--n 64] [--images 50] [--steps 1]

Banks are generated first (not timed) into a temporary SQLite file; then one rater submits task after task and
each following ``show_task`` call is timed. Prints the median and the 90th percentile in milliseconds.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist-x4")
    p.add_argument("--n", type=int, default=64, help="samples per bank (what a task shows)")
    p.add_argument("--images", type=int, default=50, help="images = timed calls")
    p.add_argument("--steps", type=int, default=1, help="sampler steps (only bank generation time depends on it)")
    a = p.parse_args(argv)
    import torch  # torch and the services load after the arguments parse: --help does not wait for them

    torch.set_num_threads(1)
    from annotation.accounts import create_rater
    from annotation.banks import run_bank_jobs
    from annotation.images import import_mnist
    from annotation.projects import create_project, settings_for_engine
    from annotation.tasks import submit
    from db.engine import make_engine, make_session_factory, session_scope
    from db.migrations import create_schema
    from sr_engine import load_engine

    from .context import AppContext, EngineRegistry
    from .rate import show_task

    eng = load_engine(a.model)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'latency.sqlite'}")
        create_schema(engine)
        factory = make_session_factory(engine)
        with session_scope(factory) as s:
            pid = create_project(s, settings_for_engine(eng, "latency", bank_size=a.n, k_picks=3, raters_per_image=3,
                                                        ensemble_size=3, steps=a.steps)).id
            import_mnist(s, pid, a.images)
            rid = create_rater(s, "timer", "rater", "pw").id
        t0 = time.perf_counter()
        run_bank_jobs(factory, eng, pid)
        print(f"{a.images} banks of {a.n} generated in {time.perf_counter() - t0:.1f} s (not timed below)")
        ctx = AppContext(factory, EngineRegistry({eng.name: eng}), None, Path(tmp))
        times, cpu = [], []
        out = show_task(ctx, rid, pid)  # the first task (warm-up)
        for _ in range(a.images - 1):
            state = out[-1]
            with session_scope(factory) as s:
                submit(s, rid, state.assignment_id, list(state.sample_ids[:3]), "5")
            t, c = time.perf_counter(), time.thread_time()
            out = show_task(ctx, rid, pid)
            times.append(1000 * (time.perf_counter() - t))
            cpu.append(1000 * (time.thread_time() - c))
            assert len(re.findall("data-sid=", out[1])) == a.n
        engine.dispose()
    med = statistics.median(times)
    p90 = sorted(times)[int(0.9 * (len(times) - 1))]
    print(f"next task (next_task + progress + render of {a.n} samples), {len(times)} calls: "
          f"median {med:.1f} ms, p90 {p90:.1f} ms, max {max(times):.1f} ms (wall clock); "
          f"CPU time median {statistics.median(cpu):.1f} ms")
    return med


if __name__ == "__main__":
    main()
