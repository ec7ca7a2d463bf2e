"""The app's database work per submission, one at a time: what the rate view's Submit does through the services
(in one write transaction: ``submit``, with its consensus update, ``next_task``, then the rater's progress and
"my work"; the second part includes the commit), without HTTP or Gradio.

    python -m ui.submit_cost [--raters 50] [--tasks 2] [--model mnist-x4] [--n 16] [--images 40]

The set-up is the load test's (``ui.loadtest``: ``--images`` MNIST evaluation rows, banks of ``--n`` samples at
1 step, 5 raters per image, one account per rater; not timed); every rater takes a first task, then the raters
submit in turn, ``--tasks`` rounds. Prints the median and 90th percentile of each part in milliseconds (wall
clock). Background consensus refits run as in the app (``annotation.consensus.BackgroundRefit``), so they
compete for the CPU and the write lock as they do there.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raters", type=int, default=50)
    p.add_argument("--tasks", type=int, default=2, help="submissions per rater")
    p.add_argument("--model", default="mnist-x4")
    p.add_argument("--n", type=int, default=16, help="samples per bank (what a task shows)")
    p.add_argument("--images", type=int, default=40, help="MNIST evaluation rows in the project (5 raters each)")
    a = p.parse_args(argv)
    if a.images * 5 < a.raters * a.tasks:
        p.error("too few images: each takes 5 raters")
    from sqlalchemy import select

    from annotation.tasks import next_task, submit
    from annotation.views import my_work, rater_progress
    from db.engine import make_engine, make_session_factory, session_scope
    from db.models import Rater
    from sr_engine import load_engine

    from .context import AppContext, EngineRegistry
    from .loadtest import _setup
    from .rate import show_task

    with tempfile.TemporaryDirectory(prefix="sr-submit-") as tmp:
        url, pid = _setup(Path(tmp), a)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        eng = load_engine(a.model)
        ctx = AppContext(factory, EngineRegistry({eng.name: eng}), None, Path(tmp) / "private")
        with session_scope(factory, write=False) as s:
            raters = list(s.scalars(select(Rater.id).where(Rater.name.like("load-%")).order_by(Rater.id)))
        on_screen = {r: show_task(ctx, r, pid)[-1] for r in raters}
        parts: dict[str, list[float]] = {"submit + next task": [], "progress + my work": [], "total": []}
        for _ in range(a.tasks):
            for r in raters:
                task = on_screen[r]
                t0 = time.perf_counter()
                with ctx.tx() as s:  # one write transaction, as the rate view's Submit
                    submit(s, r, task.assignment_id, list(task.sample_ids[:2]), "7")
                    nxt = next_task(s, r, pid)
                    t1 = time.perf_counter()
                    prog = rater_progress(s, r, pid)
                    my_work(s, r, pid)
                t2 = time.perf_counter()  # "progress + my work" includes the commit
                parts["submit + next task"].append(t1 - t0)
                parts["progress + my work"].append(t2 - t1)
                parts["total"].append(t2 - t0)
                on_screen[r] = show_task(ctx, r, pid, "", (nxt, prog))[-1]
        ctx.refit.idle()
        ctx.refit.close()
        engine.dispose()
    out = {}
    for name, xs in parts.items():
        xs = sorted(xs)
        med, p90 = statistics.median(xs), xs[int(0.9 * (len(xs) - 1))]
        out[name] = med
        print(f"{name}: median {1000 * med:.1f} ms, p90 {1000 * p90:.1f} ms ({len(xs)} submissions)")
    return out


if __name__ == "__main__":
    main()
