"""What every view shares: the session factory, the loaded engines, the bank worker, and the one place that turns
a request into an account with a role.

Identity comes only from the server: Gradio's login (``launch(auth=ctx.authenticate)``) ties a random session
cookie to a user name (kept in :class:`~annotation.sessions.SessionTable`, checked on every request by
:mod:`ui.security`), ``gr.Request.username`` reads it back, and :meth:`AppContext.actor` looks the account and
its role up in the database on every call. Nothing a client sends (no field, no state, no session hash) can name
the caller. An account whose password is a one-time one may do nothing but change it (:meth:`AppContext.actor`
refuses everything else on the server).
"""

from __future__ import annotations

import functools
import html
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from sqlalchemy.orm import Session, sessionmaker

from annotation.consensus import DEFER_REFIT, BackgroundRefit
from annotation.downloads import DEFAULT_TTL_S, PrivateDownloads
from annotation.errors import AnnotationError
from annotation.projects import load_model, model_spec
from annotation.sessions import DEFAULT_IDLE_S, SessionTable, SignInThrottle, account_state
from annotation.text import safe_message
from annotation.uploads import MAX_UPLOAD_BYTES
from db.engine import is_busy, session_scope
from sr_engine import SREngine, list_models

from .render import message_html
from .security import Guard

logger = logging.getLogger(__name__)


class Denied(gr.Error):
    """A refusal of who asks (not signed in, a wrong role, a deactivated account), not of what they ask: always an
    error to the caller, never a status message (:func:`beside`)."""


def refuse(message: str, *, level: int = logging.INFO, denied: bool = False) -> gr.Error:
    """The error to raise when a request is refused (bad input, a missing permission): the message goes to the
    page and one line to the log, without a traceback; a refusal is not a bug. Real bugs still raise their own
    exceptions, which Gradio logs with the traceback. The toast shows HTML: the message is escaped and stripped of
    memory addresses first (:func:`annotation.text.safe_message`). ``denied``: a refusal of the caller
    (:class:`Denied`)."""
    message = safe_message(message)
    logger.log(level, "refused: %s", message)
    return (Denied if denied else gr.Error)(message, print_exception=False)


def beside(outputs: int = 1) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """For a handler whose first output is the status element beside its button (the admin's actions): a refusal of
    what it asks (:func:`refuse`, a service's :class:`~annotation.errors.AnnotationError` through
    :meth:`AppContext.tx`) is returned into that element, escaped, with the class ``sr-error``, and the handler's
    other ``outputs - 1`` outputs are left as they are; no toast. A refusal of who asks (:class:`Denied`) and real
    bugs still raise. The wrapped handler keeps its signature, so Gradio still injects ``gr.Request``."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Denied:
                raise
            except gr.Error as err:  # its message is already safe HTML (refuse): shown once, not escaped twice
                shown = message_html(html.unescape(str(err.message)), "error")
                return shown if outputs == 1 else (shown, *[gr.skip()] * (outputs - 1))

        return run

    return wrap


BUSY_MESSAGE = "The store is busy; try again in a moment."
# a project's consensus refits under a stream of submissions: at most one per this many seconds (each submission
# updates its own image from the last fit meanwhile; an analyst's exclusion refits at once)
REFIT_INTERVAL_S = 5.0
REFIT_YIELD_S = 10.0  # ... and waits up to this long for a moment when no request is writing
REFIT_QUIET_S = 0.5  # ... that is, no request has held or waited for the write lock for this long


def _int_or_refuse(value: object, refusal: str) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise refuse(refusal) from None


def whole_number(value: object, what: str) -> int:
    """A number field's value as an int, or a refusal naming the field."""
    return _int_or_refuse(value, f"{what} must be a whole number.")


def chosen_id(value: object, what: str) -> int:
    """The id chosen in a dropdown (a project, an image), or a refusal asking to choose one."""
    return _int_or_refuse(value, f"Choose {what}.")


MUST_CHANGE = "Change your one-time password first (the form at the top of the page)."


@dataclass(frozen=True)
class Actor:
    id: int
    name: str
    role: str
    must_change_password: bool = False


class EngineRegistry:
    """Engines by model name, loaded once per process and shared read-only (not per-user state)."""

    def __init__(self, preloaded: dict[str, SREngine] | None = None):
        self._engines: dict[str, SREngine] = dict(preloaded or {})
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(set(list_models()) | set(self._engines))

    def get(self, name: str) -> SREngine:
        """The engine of a model string: a shipped name, or ``diffusers:/dir`` (kept under its absolute path,
        which is also the engine's name and what a project stores)."""
        name = name if name in self._engines else model_spec(name)
        with self._lock:
            if name not in self._engines:
                for attempt in range(3):  # a checkpoint being re-exported at this moment reads as truncated
                    try:
                        self._engines[name] = load_model(name)
                        break
                    except ValueError:
                        if attempt == 2 or name.startswith("diffusers:"):  # a folder does not heal in 4 s
                            raise
                        time.sleep(2.0)
            return self._engines[name]


class AppContext:
    """``private_dir``: where files made for one account (exports) wait for their download (0700; see
    :mod:`annotation.downloads`); it must not be under Gradio's ``allowed_paths``. ``max_upload_bytes``: one
    uploaded file (``app.py --max-upload-mb``)."""

    def __init__(self, factory: sessionmaker[Session], engines: EngineRegistry, worker: Any, private_dir: Path, *,
                 session_idle_s: float = DEFAULT_IDLE_S, download_ttl_s: float = DEFAULT_TTL_S,
                 max_upload_bytes: int = MAX_UPLOAD_BYTES):
        self.max_upload_bytes = int(max_upload_bytes)
        self.factory = factory
        self.engines = engines
        self.worker = worker
        self.downloads = PrivateDownloads(Path(private_dir) / "downloads", ttl_s=download_ttl_s)
        self.downloads.sweep()  # a previous run's files are unreachable now: remove them
        self.sessions = SessionTable(session_idle_s)
        self.guard = Guard(factory, self.sessions, SignInThrottle(), self.downloads)
        # consensus refits off the request path (annotation.consensus), each project at most every few seconds
        self.refit = BackgroundRefit(factory, min_interval_s=REFIT_INTERVAL_S, yield_s=REFIT_YIELD_S,
                                     quiet_s=REFIT_QUIET_S)

    # ---- identity ------------------------------------------------------------------------------------------
    async def authenticate(self, username: str, password: str) -> bool:
        """Gradio's login check (:meth:`ui.security.Guard.authenticate`): the account exists, is active and the
        password matches its scrypt hash; throttled, and run off the event loop."""
        return await self.guard.authenticate(username, password)

    def actor(self, request: gr.Request | None, *roles: str, allow_must_change: bool = False) -> Actor:
        """The signed-in account behind ``request``; refuses (:func:`refuse`) unless its role is one of ``roles``
        (any role when none are given), and refuses an account that must change its one-time password first
        (unless ``allow_must_change``: the page's start and the change itself)."""
        name = getattr(request, "username", None) if request is not None else None
        if not name:
            raise refuse("Sign in first.", denied=True)
        # the account as the sign-in check read it for this very request (the middleware reads it from the store
        # at most STATE_TTL_S before; a change made in this process is seen at once), else from the store
        fresh, state = self.sessions.fresh_state(name)
        if not fresh:
            with self.tx(write=False) as s:
                state = account_state(s, name)
        if state is None:
            raise refuse("Unknown account.", level=logging.WARNING, denied=True)
        if not state.active:
            raise refuse("This account is deactivated.", level=logging.WARNING, denied=True)
        if state.must_change_password and not allow_must_change:
            raise refuse(MUST_CHANGE, level=logging.WARNING, denied=True)
        if roles and state.role not in roles:
            raise refuse(f"Not allowed: this needs the {' or '.join(roles)} role; you are a {state.role}.",
                         level=logging.WARNING, denied=True)
        return Actor(state.id, state.name, state.role, state.must_change_password)

    # ---- transactions ----------------------------------------------------------------------------------------
    @contextmanager
    def tx(self, *, write: bool = True) -> Iterator[Session]:
        """One transaction per button press; a service's refusal (:class:`~annotation.errors.AnnotationError`)
        becomes a message in the page and one log line (:func:`refuse`). ``write=False`` for a request that only
        reads: it never waits for the write lock. A write that waited the engine's busy timeout (a few seconds
        in the app) for the lock is refused with "busy, try again", also as one log line."""
        try:
            with session_scope(self.factory, write=write) as s:
                if write:
                    s.info[DEFER_REFIT] = self.refit.schedule
                yield s
        except AnnotationError as err:
            raise refuse(str(err)) from None
        except Exception as err:
            if is_busy(err):
                raise refuse(BUSY_MESSAGE, level=logging.WARNING) from None
            raise
