"""Start the rating app: ``python app.py [--host 127.0.0.1] [--port 7860] [--db-url URL] [--data-dir DIR]``.

Serves on the loopback address by default, with an embedded SQLite file under the data directory (or any
SQLAlchemy URL) and the shipped models. The first start migrates the database, creates an admin (a one-time
password is printed unless ``--admin-password`` / ``$SR_ADMIN_PASSWORD`` gives one), and seeds a demo project of
ambiguous MNIST evaluation digits whose banks are generated before serving (progress in the terminal); the demo
rater's and analyst's passwords are printed too. Nothing is fetched from the internet: no analytics, no share
link, no remote fonts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent
ADMIN_PASSWORD_ENV = "SR_ADMIN_PASSWORD"
DEMO_MODEL = "mnist-x4"
PLATES_DEMO_MODEL = "plates-x4"


def bootstrap(factory, engines, *, admin_password: str | None, demo_model: str = DEMO_MODEL,
              demo: bool = True, log: Callable[[str], None] = print) -> None:
    """First start: the admin, then (if there is no project yet and the model is installed) the demo project
    with its banks generated now, so the first rater is served at once."""
    from annotation.accounts import ensure_admin
    from annotation.banks import progress, run_bank_jobs
    from annotation.demo import seed_demo
    from annotation.projects import list_projects
    from db.engine import session_scope

    with session_scope(factory) as s:
        admin = ensure_admin(s, admin_password)
        has_projects = bool(list_projects(s))
    if admin is not None:
        shown = admin.password if admin.generated else "(the password you gave)"
        log(f"created admin {admin.name!r}; one-time password: {shown}")
    if not demo or has_projects:
        return
    if demo_model not in engines.names():
        log(f"no demo project: the model {demo_model!r} is not installed (data/checkpoints/)")
        return
    engine = engines.get(demo_model)
    with session_scope(factory) as s:
        acc = seed_demo(s, engine.name, int(engine.scale))
        n_images = progress(s, acc.project_id).images
    log(f"demo project: generating {n_images} banks with {engine.name} ...")

    def show(rep) -> None:
        done = len(rep.completed) + len(rep.failed)
        bar = "#" * (20 * done // max(n_images, 1))
        log(f"  banks [{bar:<20}] {done}/{n_images}" + (f" ({len(rep.failed)} failed)" if rep.failed else ""))

    rep = run_bank_jobs(factory, engine, acc.project_id, on_progress=show)
    log(f"demo banks ready in {rep.seconds:.1f} s")
    _plates_demo(factory, engines, log)
    log(f"demo rater:   {acc.rater} / {acc.rater_password}")
    log(f"demo analyst: {acc.analyst} / {acc.analyst_password}")


def _plates_demo(factory, engines, log: Callable[[str], None]) -> None:
    """The second demo project, ambiguous plates, when the plates model and its reader are installed."""
    from annotation.banks import run_bank_jobs
    from annotation.demo import seed_plates_demo
    from db.engine import session_scope
    from sr_engine.data import data_dir

    reader_path = data_dir() / "readers" / "plates-reader.pt"
    if PLATES_DEMO_MODEL not in engines.names() or not reader_path.is_file():
        log(f"no plates demo: {PLATES_DEMO_MODEL!r} or its reader is not installed")
        return
    from sr_engine.eval.reader import load_reader

    engine = engines.get(PLATES_DEMO_MODEL)
    log("plates demo: choosing the plates the reader disagrees on most ...")
    with session_scope(factory) as s:
        pid, chosen = seed_plates_demo(s, engine, load_reader(reader_path))
    log(f"plates demo: generating {len(chosen)} banks with {engine.name} ...")
    rep = run_bank_jobs(factory, engine, pid)
    log(f"plates demo banks ready in {rep.seconds:.1f} s")


def create_app(db_url: str | None = None, data_dir: str | Path | None = None, *,
               admin_password: str | None = None, engines: Any = None, demo: bool = True,
               log: Callable[[str], None] = print):
    """(blocks, context, launch keywords): everything ``main`` serves, for tests to launch in-process."""
    import torch

    torch.set_num_threads(1)  # the worker's one torch thread; handlers do no heavy tensor work
    from db.engine import make_engine, make_session_factory
    from db.migrations import upgrade
    from ui import CSS, KEYS_JS, AppContext, BankWorker, EngineRegistry, build_app

    data = Path(data_dir) if data_dir else ROOT / "data"
    data.mkdir(parents=True, exist_ok=True)
    url = db_url or f"sqlite:///{(data / 'annotation.sqlite').resolve()}"
    engine = make_engine(url)
    upgrade(engine=engine)
    factory = make_session_factory(engine)
    engines = engines or EngineRegistry()
    bootstrap(factory, engines, admin_password=admin_password, demo=demo, log=log)
    worker = BankWorker(factory, engines.get, log=log).start()
    exports = data / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    ctx = AppContext(factory, engines, worker, exports)
    blocks = build_app(ctx).queue(default_concurrency_limit=8)
    launch = dict(auth=ctx.authenticate, auth_message="Sign in with the account your admin gave you.",
                  share=False, css=CSS, js=KEYS_JS, allowed_paths=[str(exports.resolve())],
                  footer_links=["api", "settings"])
    return blocks, ctx, launch


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--db-url", default=os.environ.get("SR_DB_URL"),
                   help="SQLAlchemy URL (default: $SR_DB_URL, else an SQLite file in the data directory)")
    p.add_argument("--data-dir", default=os.environ.get("SR_DATA_DIR"),
                   help="the SQLite file and generated files (exports) live here (default: ./data)")
    p.add_argument("--admin-password", default=os.environ.get(ADMIN_PASSWORD_ENV),
                   help=f"the first admin's password (default: ${ADMIN_PASSWORD_ENV}, else a printed one-time one)")
    p.add_argument("--no-demo", action="store_true", help="do not seed the demo project on first start")
    a = p.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    blocks, ctx, launch = create_app(a.db_url, a.data_dir, admin_password=a.admin_password, demo=not a.no_demo,
                                     log=log)
    log(f"serving on http://{a.host}:{a.port}")
    try:
        blocks.launch(server_name=a.host, server_port=a.port, **launch)
    finally:
        ctx.worker.stop()


if __name__ == "__main__":
    sys.exit(main())
