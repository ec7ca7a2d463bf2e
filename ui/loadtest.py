"""Load test: many raters submitting at once over HTTP, each as a browser tab does it (its own sign-in cookie and
Gradio session), against the real app (``python app.py``) on 127.0.0.1.

    python -m ui.loadtest [--raters 50] [--tasks 2] [--model mnist-x4] [--n 16] [--images 40] [--runs 1]

Set-up (not timed): a throwaway data directory with a project for ``--model`` (``--images`` MNIST evaluation
rows, banks of ``--n`` samples at 1 step, 5 raters per image) and one rater account per client; then the app is
started as its own process (``--app-root``: the checkout whose ``app.py`` serves, default this one). Each client
is a thread with its own HTTP connection: it signs in (``POST /login``), asks for its first task, waits until every
client has one, then submits ``--tasks`` times, each submission answering with the next task, sending each event
as the page does: an event outside Gradio's queue (the rate view's ``submit``) is one
``POST /gradio_api/run/<name>``, a queued one (``next_task``) is ``POST /gradio_api/queue/join`` and its result
from ``GET /gradio_api/queue/data``. After each submission the client also sends what the page chains to a
successful one (the side panels, untimed). The time of a submission is from its request to its result (the
response, or the ``process_completed`` message of a queued event). A bounded thread pool (``--raters``
threads) does the rest.

Prints p50, p95 and the maximum submission latency, then the votes: answered "Saved." by the app, stored
(submitted assignments in the database), lost (answered "Saved." but not stored) and doubled (one rater's image
stored twice, or an assignment with more picks than k), and any request that failed (e.g. "busy, try again").
A script, not a timed test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "load-test-pw"


@dataclass
class ClientResult:
    name: str
    latencies: list[float] = field(default_factory=list)  # seconds per submission
    saved: int = 0  # submissions the app answered "Saved."
    errors: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with status {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the app did not answer at {url} within {timeout:.0f} s")


def _setup(data: Path, a: argparse.Namespace) -> tuple[str, int]:
    """The project, its banks and one rater per client, in ``data``'s SQLite file; (db url, project id)."""
    import torch

    torch.set_num_threads(1)
    from annotation.accounts import create_rater, ensure_admin
    from annotation.banks import run_bank_jobs
    from annotation.images import import_mnist
    from annotation.projects import create_project, settings_for_engine
    from db.engine import make_engine, make_session_factory, session_scope
    from db.migrations import upgrade
    from sr_engine import load_engine

    url = f"sqlite:///{(data / 'annotation.sqlite').resolve()}"
    engine = make_engine(url)
    upgrade(engine=engine)
    factory = make_session_factory(engine)
    eng = load_engine(a.model)
    with session_scope(factory) as s:
        ensure_admin(s, secrets.token_urlsafe(12))
        pid = create_project(s, settings_for_engine(eng, "load", bank_size=a.n, k_picks=2, raters_per_image=5,
                                                    ensemble_size=2, steps=1)).id
        import_mnist(s, pid, a.images)
        for i in range(a.raters):
            create_rater(s, f"load-{i:03d}", "rater", PASSWORD)
    t0 = time.perf_counter()
    rep = run_bank_jobs(factory, eng, pid)
    print(f"set-up: {len(rep.completed)} banks of {a.n} samples in {time.perf_counter() - t0:.1f} s (not timed)",
          flush=True)
    engine.dispose()
    return url, pid


class Tab:
    """One browser tab: a cookie jar, a Gradio session hash, and the two events a rater uses."""

    def __init__(self, base: str, name: str, fn: dict[str, tuple[int, bool]]):
        import httpx

        self.http = httpx.Client(base_url=base, timeout=120)
        self.session_hash = secrets.token_hex(6)
        self.name, self.fn = name, fn

    def sign_in(self) -> None:
        r = self.http.post("login", data={"username": self.name, "password": PASSWORD})
        if r.status_code not in (200, 303) or "access-token" not in "".join(self.http.cookies.keys()):
            raise RuntimeError(f"{self.name}: sign-in failed ({r.status_code})")

    def call(self, event: str, data: list) -> list:
        """Send ``event`` as the page does: an event outside Gradio's queue (``queue=False``) is one
        ``POST /gradio_api/run/<api name>``; a queued one joins the queue and reads its result from the session's
        event stream."""
        fn_index, queued = self.fn[event]
        body = {"data": data, "event_data": None, "fn_index": fn_index, "trigger_id": None,
                "session_hash": self.session_hash}
        if not queued:
            r = self.http.post(f"gradio_api/run/{'predict' if event.startswith('after-') else event}", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"{self.name}: {event} failed ({r.status_code}): {r.text[:300]}")
            return r.json()["data"]
        r = self.http.post("gradio_api/queue/join", json=body)
        r.raise_for_status()
        event_id = r.json()["event_id"]
        with self.http.stream("GET", "gradio_api/queue/data", params={"session_hash": self.session_hash}) as s:
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") not in (None, event_id) or msg.get("msg") != "process_completed":
                    continue
                out = msg.get("output") or {}
                if not msg.get("success", False):
                    raise RuntimeError(f"{self.name}: {event} failed: {out.get('error') or out}")
                return out["data"]
        raise RuntimeError(f"{self.name}: the event stream ended without a result")

    def close(self) -> None:
        self.http.close()


def _fn_indices(base: str) -> dict[str, tuple[int, bool]]:
    tab = Tab(base, "load-000", {})
    try:
        tab.sign_in()  # the page's config is for signed-in users
        config = tab.http.get("config").json()
    finally:
        tab.close()
    deps = config["dependencies"]
    out = {d["api_name"]: (d["id"], d.get("queue") is not False) for d in deps
           if d.get("api_name") in ("next_task", "submit")}
    if "submit" in out:  # what the page sends when a submission succeeds (its side panels: "my work")
        out.update({f"after-submit-{d['id']}": (d["id"], d.get("queue") is not False) for d in deps
                    if d.get("trigger_after") == out["submit"][0]})
    if not {"next_task", "submit"} <= set(out):
        raise RuntimeError(f"the app has no next_task/submit events: {sorted(out)}")
    return out


def _rater(base: str, name: str, pid: int, tasks: int, fn: dict[str, tuple[int, bool]],
           ready: threading.Barrier) -> ClientResult:
    res = ClientResult(name)
    tab = Tab(base, name, fn)
    out = None
    try:
        tab.sign_in()
        out = tab.call("next_task", [pid])
    except Exception as err:  # noqa: BLE001 - reported with the figures
        res.errors.append(str(err))
    try:
        ready.wait(timeout=300)  # every client holds a task: now they all submit at once
    except threading.BrokenBarrierError:
        pass
    try:
        for _ in range(tasks if out is not None else 0):
            sids = re.findall(r"data-sid='(\d+)'", str(out[1]))
            if len(sids) < 2:
                break
            t = time.perf_counter()
            out = tab.call("submit", [f"{sids[1]},{sids[0]}", "7", None])
            res.latencies.append(time.perf_counter() - t)
            res.saved += "Saved." in str(out[5])
            for event in fn:  # then, as the page does, the events chained after a successful submission (untimed)
                if event.startswith("after-submit-"):
                    tab.call(event, [pid])
    except Exception as err:  # noqa: BLE001 - reported with the figures
        res.errors.append(str(err))
    finally:
        tab.close()
    return res


def _count_votes(url: str, pid: int, k: int = 2) -> tuple[int, int]:
    """(submitted assignments, doubled: an image submitted twice by one rater or an assignment with > k picks)."""
    from sqlalchemy import func, select

    from db.engine import make_engine, make_session_factory, session_scope
    from db.models import Assignment, AssignmentStatus, Pick

    engine = make_engine(url)
    with session_scope(make_session_factory(engine), write=False) as s:
        stored = s.scalar(select(func.count(Assignment.id)).where(Assignment.project_id == pid,
                                                                  Assignment.status == AssignmentStatus.submitted))
        twice = s.execute(select(Assignment.rater_id, Assignment.image_id).where(
            Assignment.project_id == pid, Assignment.status == AssignmentStatus.submitted)
            .group_by(Assignment.rater_id, Assignment.image_id).having(func.count() > 1)).all()
        overfull = s.execute(select(Pick.assignment_id).group_by(Pick.assignment_id)
                             .having(func.count() > k)).all()
    engine.dispose()
    return int(stored or 0), len(twice) + len(overfull)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_once(a: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="sr-load-") as tmp:
        data = Path(tmp)
        url, pid = _setup(data, a)
        port = _free_port()
        env = dict(os.environ, PYTHONPATH=str(a.app_root))
        cmd = [sys.executable, str(Path(a.app_root) / "app.py"), "--data-dir", str(data), "--db-url", url,
               "--no-demo", "--port", str(port), "--log-level", "WARNING", "--admin-password", "unused-here"]
        log = open(data / "app.log", "w")
        proc = subprocess.Popen(cmd, cwd=a.app_root, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/"
        try:
            _wait_for(base + "login_check", proc)
            fn = _fn_indices(base)
            # the timed phase: from the moment every client holds a task to the last answer
            marks: list[tuple[float, float | None]] = []
            ready = threading.Barrier(a.raters, action=lambda: marks.append((time.perf_counter(),
                                                                             _cpu_seconds(proc.pid))))
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=a.raters) as pool:
                results = list(pool.map(lambda i: _rater(base, f"load-{i:03d}", pid, a.tasks, fn, ready),
                                        range(a.raters)))
            wall = time.perf_counter() - t0
            marks.append((time.perf_counter(), _cpu_seconds(proc.pid)))
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        stored, doubled = _count_votes(url, pid)
    lat = sorted(x for r in results for x in r.latencies)
    saved = sum(r.saved for r in results)
    errors = [e for r in results for e in r.errors]
    q = (lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] if lat else float("nan"))  # noqa: E731
    phase = marks[-1][0] - marks[0][0] if len(marks) == 2 else float("nan")
    cpu = marks[-1][1] - marks[0][1] if len(marks) == 2 and None not in (marks[0][1], marks[-1][1]) else None
    return dict(submits=len(lat), p50=q(0.5), p95=q(0.95), max=lat[-1] if lat else float("nan"), phase=phase,
                app_cpu_per_submit=cpu / len(lat) if cpu is not None and lat else None,
                mean=statistics.fmean(lat) if lat else float("nan"), wall=wall, saved=saved, stored=stored,
                lost=max(0, saved - stored), doubled=doubled, errors=errors)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raters", type=int, default=50, help="concurrent HTTP clients, one rater account each")
    p.add_argument("--tasks", type=int, default=2, help="submissions per rater")
    p.add_argument("--model", default="mnist-x4")
    p.add_argument("--n", type=int, default=16, help="samples per bank (what a task shows)")
    p.add_argument("--images", type=int, default=40, help="MNIST evaluation rows in the project (5 raters each)")
    p.add_argument("--runs", type=int, default=1, help="repeat the whole measurement")
    p.add_argument("--app-root", default=str(ROOT), help="the checkout whose app.py serves (default: this one)")
    a = p.parse_args(argv)
    if a.images * 5 < a.raters * a.tasks:
        p.error("too few images: each takes 5 raters")
    out = []
    for i in range(a.runs):
        r = run_once(a)
        out.append(r)
        print(f"run {i + 1}: {a.raters} raters x {a.tasks} submissions over HTTP: p50 {r['p50']:.2f} s, "
              f"p95 {r['p95']:.2f} s, max {r['max']:.2f} s ({r['submits']} submissions in {r['phase']:.1f} s"
              + (f", app CPU {1000 * r['app_cpu_per_submit']:.0f} ms each" if r["app_cpu_per_submit"] else "")
              + f"; {r['wall']:.1f} s with sign-ins and first tasks); "
              f"votes: {r['saved']} saved, {r['stored']} stored, {r['lost']} lost, {r['doubled']} doubled"
              + (f"; {len(r['errors'])} error(s), first: {r['errors'][0]}" if r["errors"] else ""), flush=True)
    return out


if __name__ == "__main__":
    main()
