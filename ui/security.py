"""What Gradio's own login does not do: sessions that expire and end, sign-in throttling, session hashes bound to
their account, and private downloads. One :class:`Guard` per app, wired in by ``app.py``::

    blocks.launch(auth=ctx.guard.authenticate, app_kwargs={"middleware": [ctx.guard.middleware()]}, ...)

Gradio resolves the user of every request from its ``access-token-*`` cookie through ``app.tokens`` (a dict it
fills at ``/login``). The middleware below puts a :class:`~annotation.sessions.SessionTable` in that dict's place
and, before each request, reads the cookie's account from the store (off the event loop, at most every second
per account), so Gradio's own checks (``/config``, ``/gradio_api/file=``, ``/gradio_api/upload``, the queue, the
API) refuse a deactivated account, an epoch ended by a new password, and an idle session, exactly as they refuse a
missing cookie (401).

Sign-in (``auth``, which Gradio awaits inside its async ``/login`` route): refused with 429 while
:class:`~annotation.sessions.SignInThrottle` says so (per name and per client address); the scrypt check and the
store's work run in worker threads (as many at a time as there are cores, up to four), so a burst of sign-ins
never holds up other requests.

Gradio's own sign-in check of its API routes (``login_check``, a plain function) runs on the event loop instead of
in a worker thread (:func:`sign_in_check_on_loop`, installed at the first request): the same function, without
a thread hand-off per request.

Session hashes: the browser picks a random ``session_hash`` per page and the queue streams each event's output to
whoever asks for that hash (``/gradio_api/queue/data``). The first signed-in account that uses a hash owns it;
another account's ``queue/join``, ``queue/data``, ``heartbeat``, ``cancel``, ``call``, ``run`` or ``api`` request
with it is refused (403), so a leaked hash gives nobody else that session's outputs or state. (Handlers take
identity from ``request.username``, which comes from the cookie on the server, never from the hash.)

Private downloads: ``GET /private-download/<token>`` hands an export to the account that made it, once, after
checking at that moment that the account is signed in, active and still an analyst or admin
(:mod:`annotation.downloads`); nothing an export writes is under Gradio's ``allowed_paths`` or its cache.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import anyio
import gradio as gr
from fastapi import Depends, HTTPException
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, StreamingResponse

from annotation.accounts import ANALYST_ROLES, authenticate, dummy_hash, record_sign_in
from annotation.downloads import PrivateDownloads
from annotation.sessions import AccountState, SessionTable, SignInThrottle, account_state, account_states
from db.engine import session_scope

logger = logging.getLogger(__name__)

DOWNLOAD_PREFIX = "/private-download/"
TOKEN_COOKIE_PREFIX = "access-token-"  # Gradio's cookies: access-token-<id> and access-token-unsecure-<id>
SIGN_IN_THREADS = max(1, min(4, os.cpu_count() or 1))  # scrypt checks at a time (16 MiB each); the rest wait
MAX_JOIN_BODY = 64 << 20  # a queue/join body read to find its session hash (Gradio would read it all anyway)
API = "/gradio_api"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class SignInAttempt:
    address: str


_ATTEMPT: contextvars.ContextVar[SignInAttempt | None] = contextvars.ContextVar("sign_in_attempt", default=None)


class SessionHashOwners:
    """Gradio session hash -> the account that used it first; entries unused for ``idle_s`` are dropped."""

    def __init__(self, idle_s: float, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 50_000):
        self.idle_s = idle_s
        self._clock = clock
        self._max = max_entries
        self._lock = threading.Lock()
        self._owners: dict[str, tuple[str, float]] = {}

    def allows(self, session_hash: str, user: str | None) -> bool:
        """Whether ``user`` may use ``session_hash``; a signed-in user claims an unowned hash."""
        now = self._clock()
        with self._lock:
            owner = self._owners.get(session_hash)
            if owner is not None and now - owner[1] > self.idle_s:
                owner = None
            if owner is not None and owner[0] != user:
                return False
            if user is not None:
                self._owners.pop(session_hash, None)
                self._owners[session_hash] = (user, now)
                if len(self._owners) > self._max:
                    for h in list(self._owners)[: len(self._owners) // 10]:
                        del self._owners[h]
            return True


def _cookies(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers") or ():
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, v = part.strip().partition("=")
                if name:
                    out.setdefault(name, v)
    return out


def _query(scope: Scope, key: str) -> str | None:
    values = parse_qs((scope.get("query_string") or b"").decode("latin-1")).get(key)
    return values[0] if values else None


async def _reply(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


class Guard:
    def __init__(self, factory: sessionmaker[Session], sessions: SessionTable, throttle: SignInThrottle,
                 downloads: PrivateDownloads):
        self.factory = factory
        self.sessions = sessions
        self.throttle = throttle
        self.downloads = downloads
        self.hashes = SessionHashOwners(sessions.idle_s)
        self._limiter: anyio.CapacityLimiter | None = None
        self._refreshing: anyio.Lock | None = None  # made in the event loop, at the first request
        self.check_on_loop: bool | None = None  # Gradio's sign-in check runs on the event loop (first request)
        dummy_hash()  # made now, so that the first unknown name does not cost a second scrypt

    # ---- wiring ---------------------------------------------------------------------------------------------
    def middleware(self) -> Middleware:
        return Middleware(GuardMiddleware, guard=self)

    def token_of(self, request: gr.Request | None) -> str | None:
        """The sign-in token of the request's session (its own account's), for :meth:`SessionTable.rebind`."""
        raw = getattr(request, "request", None) if request is not None else None
        cookies = dict(getattr(raw, "cookies", {}) or {})
        for key, value in cookies.items():
            if key.startswith(TOKEN_COOKIE_PREFIX) and self.sessions.name_of(value) == request.username:
                return value
        return None

    # ---- accounts --------------------------------------------------------------------------------------------
    def load_state(self, name: str) -> AccountState | None:
        with session_scope(self.factory, write=False) as s:  # a read: never waits for the write lock
            return account_state(s, name)

    def load_states(self, names: set[str]) -> dict[str, AccountState | None]:
        with session_scope(self.factory, write=False) as s:
            return account_states(s, names)

    async def refresh(self, name: str) -> None:
        """Read ``name``'s state if it is due, with every other signed-in account that is due, in one query; a
        request that finds a read under way waits for it instead of starting its own (single flight)."""
        if not self.sessions.state_is_stale(name):
            return
        if self._refreshing is None:
            self._refreshing = anyio.Lock()
        async with self._refreshing:
            if not self.sessions.state_is_stale(name):  # the read this request waited for covered it
                return
            names = self.sessions.stale_names() | {name}
            for _ in range(2):  # a second read only if this process changed the account while the first ran
                read_at = self.sessions.now()
                self.sessions.set_states(await anyio.to_thread.run_sync(self.load_states, names), read_at)
                if not self.sessions.state_is_stale(name):
                    return
                names = {name}

    def _check_password(self, name: str, password: str) -> AccountState | None:
        with session_scope(self.factory, write=False) as s:  # scrypt runs outside the write lock
            info = authenticate(s, name, password)
        if info is None:
            return None
        with session_scope(self.factory) as s:
            record_sign_in(s, info.id)
            return account_state(s, name)

    async def authenticate(self, username: str, password: str) -> bool:
        """Gradio's ``auth``: True if the name and password match an active account. Throttled (429 while the
        name or the client address must wait); the check runs in a worker thread."""
        attempt = _ATTEMPT.get()
        address = attempt.address if attempt is not None else "unknown"
        wait = self.throttle.retry_after(username, address)
        if wait > 0:
            logger.warning("sign-in for %r from %s refused: throttled for %.0f s", username, address, wait)
            raise HTTPException(status_code=429, detail=f"Too many failed sign-ins: try again in {math.ceil(wait)} s.",
                                headers={"Retry-After": str(math.ceil(wait))})
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(SIGN_IN_THREADS)
        state = await anyio.to_thread.run_sync(self._check_password, username, password, limiter=self._limiter)
        if state is None:
            self.throttle.failure(username, address)
            logger.info("sign-in failed for %r from %s", username, address)
            return False
        self.throttle.success(username)
        self.sessions.expect(state)
        return True

    # ---- private downloads ---------------------------------------------------------------------------------
    async def download(self, scope: Scope, receive: Receive, send: Send, user: str | None) -> None:
        if user is None:
            return await _reply(scope, receive, send, 401, "Not authenticated")
        state = self.sessions.state(user)
        if state is None or state.role not in ANALYST_ROLES or state.must_change_password:
            logger.warning("refused: %r (%s) asked for a private download", user, state.role if state else "?")
            return await _reply(scope, receive, send, 403, "Not allowed")
        ticket = self.downloads.claim(scope["path"][len(DOWNLOAD_PREFIX):], state.id)
        if ticket is None:
            return await _reply(scope, receive, send, 404, "No such download (each link works once, for a while)")
        try:
            f = open(ticket.path, "rb")  # closed by the stream below
        except OSError:
            self.downloads.remove(ticket)
            return await _reply(scope, receive, send, 404, "No such download (each link works once, for a while)")
        size = os.fstat(f.fileno()).st_size
        self.downloads.remove(ticket)  # gone from the disk before the first byte leaves; the open file still reads

        async def chunks():
            try:
                while chunk := await anyio.to_thread.run_sync(f.read, 1 << 16):
                    yield chunk
            finally:
                f.close()

        name = "".join(c for c in ticket.filename if c.isascii() and c.isprintable() and c not in '"\\')
        headers = {"Content-Disposition": f'attachment; filename="{name}"',
                   "Content-Length": str(size), "Cache-Control": "no-store"}
        await StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)(scope, receive, send)


class GuardMiddleware:
    """Pure ASGI (no extra task per request): see the module's docstring."""

    def __init__(self, app, guard: Guard):
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        guard = self.guard
        server_app = scope.get("app")
        if server_app is not None and hasattr(server_app, "tokens"):
            if server_app.tokens is not guard.sessions:
                server_app.tokens = guard.sessions  # Gradio's App resets its dict when it is configured
            if not getattr(server_app, _CHECK_ON_LOOP, False):
                guard.check_on_loop = sign_in_check_on_loop(server_app)
        cookies = _cookies(scope)
        token = next((v for k, v in cookies.items() if k.startswith(TOKEN_COOKIE_PREFIX) and v in guard.sessions),
                     None)
        name = guard.sessions.name_of(token)
        if name is not None:
            await guard.refresh(name)
        user = guard.sessions.get(token) if token else None
        path, method = scope["path"], scope["method"]

        if method == "POST" and path.rstrip("/") == "/login":
            client = scope.get("client")
            reset = _ATTEMPT.set(SignInAttempt(str(client[0]) if client else "unknown"))
            try:
                return await self.app(scope, receive, send)
            finally:
                _ATTEMPT.reset(reset)
        if path.startswith(DOWNLOAD_PREFIX) and method == "GET":
            return await guard.download(scope, receive, send, user)

        session_hash = None
        if path == f"{API}/queue/data":
            session_hash = _query(scope, "session_hash")
        elif path.startswith(f"{API}/heartbeat/"):
            session_hash = path[len(f"{API}/heartbeat/"):]
        elif method == "POST" and (path.rstrip("/") in (f"{API}/queue/join", f"{API}/cancel")
                                   or path.startswith((f"{API}/call/", f"{API}/run/", f"{API}/api/"))):
            body, receive = await _buffer(receive)
            if body is None:
                return await _reply(scope, receive, send, 413, "Request too large")
            try:
                session_hash = json.loads(body or b"{}").get("session_hash")
            except (ValueError, AttributeError):
                session_hash = None  # Gradio answers a bad body itself
        if isinstance(session_hash, str) and session_hash and not guard.hashes.allows(session_hash, user):
            logger.warning("refused: %r used another account's session hash on %s", user, path)
            return await _reply(scope, receive, send, 403, "This session belongs to another account")
        return await self.app(scope, receive, send)


_CHECK_ON_LOOP = "_sr_sign_in_check_on_loop"


def sign_in_check_on_loop(server_app: Any) -> bool:
    """Run Gradio's sign-in check of its API routes (``login_check``, a plain function that only reads the user
    the cookie resolved to) on the event loop instead of in a worker thread: FastAPI runs a plain-function
    dependency through the thread pool, one thread hand-off per request before the handler's own, and under a
    burst of raters each hand-off waits for the interpreter lock. The override calls Gradio's own function, so
    the check is exactly Gradio's; it goes through FastAPI's ``dependency_overrides``. False (nothing changed)
    when this Gradio has no such dependency."""
    check = user_dep = None
    for route in getattr(server_app, "routes", ()):
        for dep in getattr(getattr(route, "dependant", None), "dependencies", ()):
            if getattr(dep.call, "__name__", "") == "login_check" and dep.dependencies:
                check, user_dep = dep.call, dep.dependencies[0].call
                break
        if check is not None:
            break
    setattr(server_app, _CHECK_ON_LOOP, True)
    if check is None or inspect.iscoroutinefunction(check) or not inspect.iscoroutinefunction(user_dep):
        return False

    async def login_check(user: str | None = Depends(user_dep)) -> None:
        return check(user)  # raises 401 for a request without a signed-in user, as the route would

    server_app.dependency_overrides[check] = login_check
    return True


async def _buffer(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body (None past :data:`MAX_JOIN_BODY`) and a ``receive`` that replays it."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_JOIN_BODY:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
