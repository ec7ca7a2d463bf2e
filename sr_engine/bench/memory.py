"""Peak memory per method above a clean interpreter: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak
resident set size) minus the resident size when the method starts.

One fresh Python process per scale imports torch and the package (and runs no torch op); its peak RSS is the
floor that every method shares. For each method it forks a child that loads only that method's networks and
makes one bank; the child reports its peak RSS minus its RSS at the start, i.e. what that method adds (its
weights, activations, the bank, and any library pages it touches). Forking saves re-importing torch per method.
Where ``os.fork`` is missing (Windows) every method gets its own fresh process instead.

    python -m sr_engine.bench.memory --families bicubic,kernel-strict --scale 4 --engine mnist-x4 --baselines DIR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np
import torch

from ..data import load_mnist, mnist_canvas
from ..degradation import make_lr
from .methods import SAMPLERS, Methods, Setting


def _peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


def _rss_mib() -> float:
    """The current RSS (Linux: /proc/self/statm); elsewhere the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_mib()


def measure(families: list[str], scale: int, engine: str, baselines: str, n: int, steps: int, tau: float = 1.0,
            threads: int = 1, timeout: float = 1800, single: bool = False) -> tuple[dict[str, float], float]:
    """({family: peak RSS increment MiB}, floor MiB) from one fresh subprocess (module docstring); ``single``:
    measure the one family in that process itself."""
    cmd = [sys.executable, "-m", "sr_engine.bench.memory", "--families", ",".join(families), "--scale", str(scale),
           "--engine", str(engine), "--baselines", str(baselines), "--n", str(n), "--steps", str(steps),
           "--tau", str(tau), "--threads", str(threads)] + (["--single"] if single else [])
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"memory measurement failed:\n{res.stderr[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {k: float(v) for k, v in out["peak_rss_mib"].items()}, float(out["floor_mib"])


def _run_one(a, family: str) -> None:
    """Load ``family`` only and make one bank of ``a.n`` samples for a training-row digit."""
    # a training row: any digit serves for memory; evaluation rows are only ever scored
    hr = load_mnist("train", pad_to=mnist_canvas(a.scale)).images[0]
    methods = Methods(a.scale, a.engine, a.baselines, families=(family,))
    s = Setting(family, steps=a.steps if family in SAMPLERS else 0, tau=a.tau)
    out = methods.bank(s, make_lr(hr, a.scale), a.n, seed=0)
    assert out.dtype == np.uint8


def _forked(a, family: str) -> float:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: measure, report, leave without running the parent's cleanup
        code = 1
        try:
            os.close(r)
            start = _rss_mib()
            _run_one(a, family)
            os.write(w, json.dumps(_peak_mib() - start).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not text:
        raise RuntimeError(f"memory measurement of {family} failed in the forked child (status {status})")
    return float(json.loads(text))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sr_engine.bench.memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", required=True, help="comma-separated method families")
    p.add_argument("--single", action="store_true", help="measure the one family in this process (no fork)")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--engine", default="mnist-x4")
    p.add_argument("--baselines", default="")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)  # the module's imports (torch, the methods) are part of the floor
    families = [f for f in a.families.split(",") if f]
    if a.single:
        start = _rss_mib()
        _run_one(a, families[0])
        print(json.dumps({"peak_rss_mib": {families[0]: round(_peak_mib() - start, 1)}, "floor_mib": start}))
        return
    floor = _peak_mib()
    peaks = {}
    for fam in families:
        if hasattr(os, "fork"):
            peaks[fam] = round(_forked(a, fam), 1)
        else:  # pragma: no cover - no fork: a fresh process each
            peaks[fam] = measure([fam], a.scale, a.engine, a.baselines, a.n, a.steps, a.tau, a.threads,
                                 single=True)[0][fam]
    print(json.dumps({"peak_rss_mib": peaks, "floor_mib": round(floor, 1)}))


if __name__ == "__main__":
    main()
