"""Command line of the annotation store, against any database URL (``--db-url``, default ``$SR_DB_URL`` or the
SQLite file in ``data/``). Each command is one transaction (bank generation: one per bank).

    python -m annotation init [--admin-password PW]           # migrate the schema, create the first admin
    python -m annotation create-project --name P --model mnist-x4 [--bank-size 64 --k 3 --raters-per-image 5 ...]
    python -m annotation create-project --name P --model mnist-x8 --min-raters 2 --max-raters 7 --resolve-threshold 0.95
    python -m annotation create-project --name P --model diffusers:/models/my-sr --mode guided [--prompt TEXT]
    python -m annotation import --project P (--path FILE|DIR|ZIP [--model NAME_OR_CHECKPOINT] | --mnist 20 [--gold 4])
    python -m annotation generate --project P [--model NAME_OR_CHECKPOINT] [--limit N] [--stale-after 60]
    python -m annotation remove-image --project P --image ID [--reason TEXT]
    python -m annotation remove-bank --project P --image ID [--reason TEXT]   # the image stays; generate re-makes it
    python -m annotation ensembles --project P [--model NAME_OR_CHECKPOINT] [--weighting mean|votes]
    python -m annotation export --project P --what votes|summary|skips|ensembles --format csv|json|parquet --out PATH
    python -m annotation accounts list
    python -m annotation accounts add --name N [--role rater|analyst|admin] [--password-stdin]
    python -m annotation accounts deactivate|activate|reset-password --name N

``accounts add`` without ``--password-stdin`` and ``accounts reset-password`` print a generated one-time password that
must be changed at the first sign-in; ``deactivate`` and a new password end the account's sign-in sessions in a
running app within a second. Account changes made here are audited with no actor (the command line).

``generate`` runs the same job as the app's background worker, so a GPU box can fill the banks of a shared
PostgreSQL database: ``python -m annotation generate --db-url postgresql+psycopg://... --project P``. It refreshes
its bank's heartbeat while it works, reclaims a bank whose worker's heartbeat is older than ``--stale-after``
seconds (a killed run), and exits with status 1 naming every bank it leaves unfinished (failed, or still
running under another live worker). ``import`` reads and checks every file (against the model's LR shape too)
before its one short write transaction; ``remove-image`` deletes an image with its bank and votes (audited), so
a project whose model cannot take an image can still reach 100%. ``remove-bank`` deletes only an image's bank
(refused while votes or skips depend on it, or while a worker generates it; audited), so that ``generate`` makes
it again: a bank that used up its attempts, or one made by an older export of the checkpoint.

Every command prints what it did on stdout; progress and diagnostics go to the log on stderr (``--log-level``,
default INFO). A refusal (bad input) is one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from db.engine import default_url, make_engine, make_session_factory, session_scope
from db.migrations import upgrade

from .errors import AnnotationError, InvalidInput
from .logconfig import add_log_level_argument, configure_logging

if TYPE_CHECKING:
    from sr_engine import SREngine

    from .banks import BankJobReport

logger = logging.getLogger("annotation.cli")  # not "__main__" under python -m

# The commands import the services inside their functions: most of them load torch (seconds), which --help and
# ``init`` do not need.


def _engine(model: str) -> SREngine:
    import torch

    torch.set_num_threads(1)  # one torch thread, like the app's worker
    from .projects import load_model

    try:
        return load_model(model)  # a diffusers folder is named by its full path: what the project stores
    except ValueError as err:  # a missing folder, pickled weights, ...: one line, not a traceback
        raise InvalidInput(str(err)) from err


def _cmd_init(a, Session) -> int:
    from .accounts import ensure_admin

    with session_scope(Session) as s:
        admin = ensure_admin(s, a.admin_password)
    if admin is None:
        print("schema is up to date; an admin already exists")
    else:
        print(admin.announcement())
    return 0


def _cmd_create_project(a, Session) -> int:
    from .projects import create_project, settings_for_engine

    eng = _engine(a.model)
    settings = settings_for_engine(eng, a.name, bank_size=a.bank_size, k_picks=a.k, raters_per_image=a.raters_per_image,
                                   ensemble_size=a.ensemble_size, steps=a.steps, mode=a.mode, scheduler=a.scheduler,
                                   seed=a.seed, gold_rate=a.gold_rate, revision_window_s=a.revision_window,
                                   lease_s=a.lease, max_lr_side=a.max_lr_side, min_raters=a.min_raters,
                                   resolve_threshold=a.resolve_threshold, pool_factor=a.pool_factor,
                                   engine_options={"prompt": a.prompt} if a.prompt else {})
    with session_scope(Session) as s:
        p = create_project(s, settings, engine=eng)
        print(f"project {p.name!r} (id {p.id}) for model {p.model_name!r} at x{p.scale}")
    return 0


def _cmd_import(a, Session) -> int:
    from .images import import_mnist, prepare_import, store_import
    from .projects import get_project

    if a.mnist:
        with session_scope(Session) as s:
            res = import_mnist(s, get_project(s, a.project).id, a.mnist, start=a.start, gold=a.gold)
    else:
        with session_scope(Session, write=False) as s:
            p = get_project(s, a.project)
        # the model's LR shape is checked at import; no write lock is held while files are read
        prepared = prepare_import(p, a.path, engine=_engine(a.model or p.model_name))
        with session_scope(Session) as s:
            res = store_import(s, prepared)
    print(f"imported {len(res.added)} image(s); {len(res.duplicates)} duplicate(s); {len(res.skipped)} skipped")
    return 0


def _cmd_generate(a, Session) -> int:
    from .banks import run_bank_jobs
    from .projects import get_project

    with session_scope(Session) as s:
        p = get_project(s, a.project)
        pid, model = p.id, a.model or p.model_name
    eng = _engine(model)

    def show(rep: BankJobReport) -> None:
        logger.info("banks: %d complete, %d failed", len(rep.completed), len(rep.failed))

    rep = run_bank_jobs(Session, eng, pid, limit=a.limit, stale_after_s=a.stale_after, heartbeat_s=a.heartbeat,
                        on_progress=show)
    for bank_id, n in rep.discarded.items():
        print(f"bank {bank_id}: discarded {n} samples of an unfinished attempt")
    print(f"{len(rep.completed)} bank(s) complete, {len(rep.failed)} failed in {rep.seconds:.1f} s")
    for u in rep.unfinished:
        print(f"unfinished: {u.describe()}", file=sys.stderr)
    if rep.unfinished:
        print(f"error: {len(rep.unfinished)} bank(s) unfinished: {', '.join(str(u.bank_id) for u in rep.unfinished)}",
              file=sys.stderr)
    return 1 if rep.failed or rep.unfinished else 0


def _cmd_remove_image(a, Session) -> int:
    from .images import remove_image
    from .projects import get_project

    with session_scope(Session) as s:
        r = remove_image(s, get_project(s, a.project).id, a.image, reason=a.reason)
    print(f"removed image {r.image_id} ({r.source}) with {r.banks} bank(s) and {r.assignments} assignment(s), "
          f"{r.submissions} of them submitted")
    return 0


def _cmd_remove_bank(a, Session) -> int:
    from .banks import remove_bank
    from .projects import get_project

    with session_scope(Session) as s:
        r = remove_bank(s, get_project(s, a.project).id, a.image, reason=a.reason)
    print(f"removed bank {r.bank_id} ({r.status}) of image {r.image_id} ({r.source}) with {r.samples} sample(s) and "
          f"{r.open_assignments} open assignment(s); `generate` makes a new one")
    return 0


def _cmd_ensembles(a, Session) -> int:
    from .ensembles import make_ensembles
    from .projects import get_project

    with session_scope(Session) as s:
        p = get_project(s, a.project)
        eng = _engine(a.model or p.model_name)
        res = make_ensembles(s, eng, p.id, weighting=a.weighting)
    print(f"{len(res)} ensemble(s); lowest LR-PSNR {min((r.lr_psnr for r in res), default=float('nan')):.2f} dB")
    return 0


def _cmd_export(a, Session) -> int:
    from .exports import export
    from .projects import get_project

    with session_scope(Session) as s:
        p = get_project(s, a.project)
        res = export(s, p.id, a.what, a.format, a.out, include_excluded=a.include_excluded)
    print(f"wrote {res.rows} row(s) to {res.path}" + (f" (provenance: {res.provenance_path})"
                                                      if res.provenance_path else ""))
    return 0


def _cmd_accounts(a, Session) -> int:
    from .accounts import add_account, list_accounts, rater_by_name, reset_password, set_active

    with session_scope(Session) as s:
        if a.action == "list":
            rows = list_accounts(s)
            head = ("name", "role", "active", "must change", "last sign-in (UTC)")
            print(f"{head[0]:<24} {head[1]:<8} {head[2]:<6} {head[3]:<11} {head[4]:<19} created (UTC)")
            for r in rows:
                last = r.last_sign_in_at.strftime("%Y-%m-%d %H:%M") if r.last_sign_in_at else "never"
                print(f"{r.name:<24} {r.role:<8} {'yes' if r.active else 'no':<6} "
                      f"{'yes' if r.must_change_password else '':<11} {last:<19} {r.created_at:%Y-%m-%d %H:%M}")
            return 0
        if not a.name:
            raise InvalidInput(f"accounts {a.action} needs --name")
        if a.action == "add":
            password = sys.stdin.readline().rstrip("\r\n") if a.password_stdin else None
            made = add_account(s, a.name, a.role, password)
            print(f"added {made.role} {made.name!r}" + (f"; one-time password: {made.password} (it must be changed at "
                                                        "the first sign-in)" if made.generated else ""))
        elif a.action == "reset-password":
            made = reset_password(s, rater_by_name(s, a.name).id)
            print(f"new one-time password for {made.name!r}: {made.password} (it must be changed at the next "
                  "sign-in; the account's sessions have ended)")
        else:
            info = set_active(s, rater_by_name(s, a.name).id, a.action == "activate")
            print(f"{info.name!r} is {'active' if info.active else 'deactivated; its sessions have ended'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db-url", default=None, help="SQLAlchemy URL (default: $SR_DB_URL or data/annotation.sqlite)")
    add_log_level_argument(common)
    p = argparse.ArgumentParser(prog="python -m annotation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("init", parents=[common], help="migrate the schema; create the first admin")
    c.add_argument("--admin-password", default=None)
    c.set_defaults(func=_cmd_init)

    c = sub.add_parser("create-project", parents=[common], help="a new project for a model")
    c.add_argument("--name", required=True)
    c.add_argument("--model", required=True,
                   help="a shipped model name, a checkpoint path, or diffusers:/path/to/pipeline (a local folder)")
    c.add_argument("--bank-size", type=int, default=64)
    c.add_argument("--k", type=int, default=3, help="picks per rater and image")
    c.add_argument("--raters-per-image", "--max-raters", dest="raters_per_image", type=int, default=5,
                   help="raters per image at most (the slots); with --min-raters, adaptive overlap")
    c.add_argument("--min-raters", type=int, default=None,
                   help="an image resolved with at least this many submissions is no longer served "
                        "(default: the maximum, every image gets it)")
    c.add_argument("--pool-factor", type=int, default=1,
                   help="draw this many times bank-size samples and show the bank-size that span them (1: no pool)")
    c.add_argument("--resolve-threshold", type=float, default=0.95,
                   help="resolved: the calibrated consensus probability reaches this (0..1]")
    c.add_argument("--ensemble-size", type=int, default=3)
    c.add_argument("--steps", type=int, default=8)
    c.add_argument("--mode", default="strict")
    c.add_argument("--scheduler", default="ddim")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--gold-rate", type=float, default=0.0)
    c.add_argument("--revision-window", type=int, default=600, help="seconds")
    c.add_argument("--lease", type=int, default=900, help="seconds")
    c.add_argument("--max-lr-side", type=int, default=128, help="larger LR images are refused on import (pixels)")
    c.add_argument("--prompt", default="", help="text prompt, for pipelines that take one (SD upscaler)")
    c.set_defaults(func=_cmd_create_project)

    c = sub.add_parser("import", parents=[common], help="import LR images")
    c.add_argument("--project", required=True)
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--path", help="a PNG/JPEG file, a folder or a zip")
    g.add_argument("--mnist", type=int, help="this many built-in MNIST evaluation rows")
    c.add_argument("--model", default=None,
                   help="the model whose LR shape the files must have (default: the project's model name)")
    c.add_argument("--start", type=int, default=0)
    c.add_argument("--gold", type=int, default=0, help="how many of the MNIST rows are gold items")
    c.set_defaults(func=_cmd_import)

    c = sub.add_parser("generate", parents=[common], help="generate the missing banks (resumable)")
    c.add_argument("--project", required=True)
    c.add_argument("--model", default=None, help="default: the project's model name")
    c.add_argument("--limit", type=int, default=None)
    c.add_argument("--stale-after", type=float, default=60.0,
                   help="seconds without a heartbeat after which another worker's unfinished bank is reclaimed")
    c.add_argument("--heartbeat", type=float, default=10.0, help="seconds between this worker's heartbeats")
    c.set_defaults(func=_cmd_generate)

    c = sub.add_parser("remove-image", parents=[common],
                       help="remove an image with its bank, assignments and votes (audited)")
    c.add_argument("--project", required=True)
    c.add_argument("--image", type=int, required=True, help="the image id")
    c.add_argument("--reason", default="", help="why (kept in the audit log)")
    c.set_defaults(func=_cmd_remove_image)

    c = sub.add_parser("remove-bank", parents=[common],
                       help="remove an image's bank (no votes or skips on it); generate makes it again (audited)")
    c.add_argument("--project", required=True)
    c.add_argument("--image", type=int, required=True, help="the image id (the image stays)")
    c.add_argument("--reason", default="", help="why (kept in the audit log)")
    c.set_defaults(func=_cmd_remove_bank)

    c = sub.add_parser("ensembles", parents=[common], help="ensembles of the most-voted samples")
    c.add_argument("--project", required=True)
    c.add_argument("--model", default=None)
    c.add_argument("--weighting", choices=["mean", "votes"], default="mean")
    c.set_defaults(func=_cmd_ensembles)

    c = sub.add_parser("export", parents=[common], help="votes, per-image summary or ensembles")
    c.add_argument("--project", required=True)
    c.add_argument("--what", choices=["votes", "summary", "skips", "ensembles"], required=True)
    c.add_argument("--format", choices=["csv", "json", "parquet"], default="csv")
    c.add_argument("--out", required=True)
    c.add_argument("--include-excluded", action="store_true")
    c.set_defaults(func=_cmd_export)

    c = sub.add_parser("accounts", parents=[common], help="list, add, deactivate, activate accounts; reset passwords")
    c.add_argument("action", choices=["list", "add", "deactivate", "activate", "reset-password"])
    c.add_argument("--name", default=None, help="the account (all actions but list)")
    c.add_argument("--role", choices=["rater", "analyst", "admin"], default="rater", help="add: the new account's role")
    c.add_argument("--password-stdin", action="store_true",
                   help="add: read the password from one line of stdin (default: a printed one-time password)")
    c.set_defaults(func=_cmd_accounts)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    configure_logging(a.log_level)
    url = a.db_url or default_url()
    engine = make_engine(url)
    try:
        upgrade(engine=engine)
        return a.func(a, make_session_factory(engine))
    except AnnotationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
