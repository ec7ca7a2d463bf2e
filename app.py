"""Start the rating app: ``python app.py [--host 127.0.0.1] [--port 7860] [--db-url URL] [--data-dir DIR]
[--max-upload-mb 20] [--busy-timeout 3] [--session-idle-minutes 60] [--log-level INFO]``.

Serves on the loopback address by default, with an embedded SQLite file under the data directory (or any
SQLAlchemy URL) and the shipped models. The first start migrates the database, creates an admin (a one-time
password is printed unless ``--admin-password`` / ``$SR_ADMIN_PASSWORD`` gives one; a printed one must be changed at
the first sign-in), and seeds a demo project of
ambiguous MNIST evaluation digits whose banks are generated before serving (progress in the terminal); the demo
rater's and analyst's passwords are printed too. Progress and diagnostics go to the log on stderr, with
timestamps (``--log-level``). Nothing is fetched from the internet: no analytics, no share link, no remote fonts.
A sign-in session ends after ``--session-idle-minutes`` without a request, and at once when its account is
deactivated or its password changes; exports are private to the analyst who made them (``ui/security.py``).

Every upload is limited (``--max-upload-mb``, default 20; Gradio refuses larger ones before they are stored) and
lands in the app's private temp folder, ``<data dir>/tmp`` (mode 0700, emptied at every start; Gradio's own copies
of files go there too). A request waits at most ``--busy-timeout`` seconds for the store's write lock, then answers
"busy, try again"; requests that only read never wait for it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from annotation.logconfig import add_log_level_argument, configure_logging

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

if TYPE_CHECKING:
    from ui import EngineRegistry

ROOT = Path(__file__).resolve().parent
ADMIN_PASSWORD_ENV = "SR_ADMIN_PASSWORD"
MAX_UPLOAD_MB = 20.0  # one uploaded file, any role
BUSY_TIMEOUT_S = 3.0  # an interactive request's wait for the write lock
# how often Gradio's queue looks for queued events (and progress updates) while it has none; Gradio's default on
# Linux is every 1 ms (10 ms), which wakes the server's event loop a thousand times a second: under a burst of
# requests each wake-up competes for the interpreter lock with the request threads
QUEUE_POLL_S, PROGRESS_POLL_S = 0.02, 0.1


def private_temp_dir(data: Path) -> Path:
    """``<data>/tmp``, emptied and private (0700): uploads and Gradio's copies of files live here, not in a
    shared system temp folder. Set as ``GRADIO_TEMP_DIR`` (read when the page is built and launched)."""
    tmp = data / "tmp"
    if tmp.is_symlink() or (tmp.exists() and not tmp.is_dir()):
        tmp.unlink()
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700, parents=True)
    tmp.chmod(0o700)  # whatever the umask
    os.environ["GRADIO_TEMP_DIR"] = str(tmp.resolve())
    return tmp


def create_app(db_url: str | None = None, data_dir: str | Path | None = None, *,
               admin_password: str | None = None, engines: EngineRegistry | None = None, demo: bool = True,
               log: Callable[[str], None] = print, session_idle_minutes: float = 60.0,
               max_upload_mb: float = MAX_UPLOAD_MB, busy_timeout_s: float = BUSY_TIMEOUT_S):
    """(blocks, context, launch keywords): everything ``main`` serves, for tests to launch in-process.

    Migrates the store, makes the first admin and (``demo``) the demo projects (:func:`annotation.demo.bootstrap_demo`),
    starts the bank worker and builds the page. ``log`` shows the first-start credentials (the admin's one-time
    password, the demo accounts): the terminal by default. Nothing is put under Gradio's ``allowed_paths``:
    exports wait in ``<data>/private/`` (0700) for their owner's download. ``max_upload_mb`` limits every upload;
    ``busy_timeout_s`` is how long a request waits for the store's write lock."""
    # torch and gradio take seconds to import; ``python app.py --help`` does not wait for them
    import torch

    from annotation.accounts import ensure_admin
    from annotation.demo import bootstrap_demo
    from db.engine import make_engine, make_session_factory, session_scope
    from db.migrations import upgrade
    from ui import CSS, KEYS_JS, AppContext, BankWorker, EngineRegistry, build_app

    torch.set_num_threads(1)  # the worker's one torch thread; handlers do no heavy tensor work
    data = Path(data_dir) if data_dir else ROOT / "data"
    data.mkdir(parents=True, exist_ok=True)
    private_temp_dir(data)
    url = db_url or f"sqlite:///{(data / 'annotation.sqlite').resolve()}"
    engine = make_engine(url, busy_timeout_ms=int(busy_timeout_s * 1000))
    upgrade(engine=engine)
    factory = make_session_factory(engine)
    engines = engines or EngineRegistry()
    with session_scope(factory) as s:
        admin = ensure_admin(s, admin_password)
    if admin is not None:
        log(admin.announcement())
    accounts = bootstrap_demo(factory, engines.names(), engines.get) if demo else None
    if accounts is not None:
        log(accounts.announcement())
    worker = BankWorker(factory, engines.get).start()
    max_upload_bytes = int(max_upload_mb * (1 << 20))
    ctx = AppContext(factory, engines, worker, data / "private", session_idle_s=60.0 * session_idle_minutes,
                     max_upload_bytes=max_upload_bytes)
    # Gradio's queue summarises its event log with pandas after every event (its monitoring page, which this app
    # does not use): over a long-running server's thousands of events that is milliseconds per click; once per
    # 1,000 events instead
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
    blocks = build_app(ctx).queue(default_concurrency_limit=8, status_update_rate=10)
    # no public setting for these (a test checks them, so a Gradio upgrade that renames them
    # fails there); a queued event starts up to QUEUE_POLL_S later (Submit and Skip do not use the queue)
    blocks._queue.sleep_when_free = QUEUE_POLL_S
    blocks._queue.progress_update_sleep_when_free = PROGRESS_POLL_S
    launch = dict(auth=ctx.authenticate, auth_message="Sign in with the account your admin gave you.",
                  share=False, css=CSS, js=KEYS_JS, app_kwargs={"middleware": [ctx.guard.middleware()]},
                  footer_links=["api", "settings"], max_file_size=max_upload_bytes,
                  # Gradio's run history keeps every call's inputs and outputs (other raters' samples, an analyst's
                  # vote tables) in the browser, and can copy them to a hosted bucket named in a request header;
                  # off: nothing is recorded, and no request schedules a recording task
                  run_history=False)
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
    p.add_argument("--session-idle-minutes", type=float, default=60.0,
                   help="a sign-in session ends after this long without a request (default: 60)")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB,
                   help=f"the largest file anyone may upload, in MB (default {MAX_UPLOAD_MB:g})")
    p.add_argument("--busy-timeout", type=float, default=BUSY_TIMEOUT_S,
                   help=f"seconds a request waits for the store's write lock before answering 'busy, try again' "
                        f"(default {BUSY_TIMEOUT_S:g})")
    add_log_level_argument(p)
    a = p.parse_args(argv)
    configure_logging(a.log_level)

    def say(msg: str) -> None:  # the app's own output: credentials on first start, the address
        print(msg, flush=True)

    if a.session_idle_minutes <= 0:
        p.error("--session-idle-minutes must be positive")
    blocks, ctx, launch = create_app(a.db_url, a.data_dir, admin_password=a.admin_password, demo=not a.no_demo,
                                     log=say, session_idle_minutes=a.session_idle_minutes,
                                     max_upload_mb=a.max_upload_mb, busy_timeout_s=a.busy_timeout)
    say(f"serving on http://{a.host}:{a.port}")
    try:
        blocks.launch(server_name=a.host, server_port=a.port, **launch)
    finally:
        ctx.worker.stop()


if __name__ == "__main__":
    sys.exit(main())
