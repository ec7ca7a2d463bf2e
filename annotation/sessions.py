"""Sign-in sessions and sign-in throttling, in memory (one app process; a restart signs everyone out).

A :class:`SessionTable` maps the random token of a sign-in cookie to its account name, the account's
``session_epoch`` when it signed in, and when it was last used. A token is valid while the account is active,
its epoch is unchanged (a deactivation or a new password bumps it) and the session has been used within the idle
timeout; an invalid token is forgotten on the spot. The account's current state is read from the store by the
caller (the app's middleware, off the event loop) at most every ``state_ttl_s`` seconds per account, and at once
after this process changes an account (:meth:`SessionTable.forget_state`); one read covers every signed-in account
that is due (:meth:`SessionTable.stale_names`, :func:`account_states`), so a burst of requests costs one query a
``state_ttl_s``, not one per account.

The table is a ``MutableMapping[str, str]`` (token -> name) so that Gradio's own login, logout and user lookup
use it unchanged; lookups (:meth:`SessionTable.get`) never touch the database.

:class:`SignInThrottle` counts failed sign-ins per account name and per client address: after ``free_failures``
failures in a row, further attempts are refused without checking the password for 2, 4, 8, ... seconds (up to
``cap_s``); a success clears the name's count (not the address's); counts are forgotten ``forget_s`` after the
last failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Rater, Role

logger = logging.getLogger(__name__)

DEFAULT_IDLE_S = 3600.0
STATE_TTL_S = 1.0  # how stale an account's active flag and epoch may be (changes by another process)
EXPECT_S = 30.0  # a passed password check starts a session only this soon after it


@dataclass(frozen=True)
class AccountState:
    """What a session is checked against, read from the store."""

    id: int
    name: str
    role: str
    active: bool
    session_epoch: int
    must_change_password: bool


_STATE_COLUMNS = (Rater.id, Rater.name, Rater.role, Rater.active, Rater.session_epoch, Rater.must_change_password)


def _state_of(row) -> AccountState:  # noqa: ANN001 - a row of _STATE_COLUMNS
    rid, name, role, active, epoch, must_change = row
    return AccountState(rid, name, Role(role).value, bool(active), int(epoch or 0), bool(must_change))


def account_state(session: Session, name: str) -> AccountState | None:
    row = session.execute(select(*_STATE_COLUMNS).where(Rater.name == name)).first()
    return None if row is None else _state_of(row)


def account_states(session: Session, names: Iterable[str]) -> dict[str, AccountState | None]:
    """:func:`account_state` of many accounts in one query (None for a name with no account)."""
    wanted = sorted(set(names))
    found: dict[str, AccountState | None] = dict.fromkeys(wanted)
    for i in range(0, len(wanted), 500):  # well under any backend's limit on bound parameters
        for row in session.execute(select(*_STATE_COLUMNS).where(Rater.name.in_(wanted[i:i + 500]))):
            found[row[1]] = _state_of(row)
    return found


@dataclass
class _Entry:
    name: str
    epoch: int
    last_seen: float


class SessionTable(MutableMapping[str, str]):
    """Token -> account name, for the sessions that are still valid (see the module's docstring).

    ``table[token] = name`` (Gradio's login) starts a session in the epoch given to :meth:`expect` for that name
    just before; a session started without one is never valid."""

    def __init__(self, idle_s: float = DEFAULT_IDLE_S, *, state_ttl_s: float = STATE_TTL_S,
                 clock: Callable[[], float] = time.monotonic):
        if idle_s <= 0:
            raise ValueError("the idle timeout must be positive")
        self.idle_s = float(idle_s)
        self.state_ttl_s = float(state_ttl_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._states: dict[str, tuple[AccountState | None, float]] = {}
        self._changed: dict[str, float] = {}  # name -> when this process last changed the account
        self._expected: dict[str, tuple[int, float]] = {}  # name -> (epoch, when) of a passed password check

    # ---- sign-in ----------------------------------------------------------------------------------------------
    def expect(self, state: AccountState) -> None:
        """The account ``state.name`` has just passed its password check: the next token stored for it starts a
        session in ``state.session_epoch``."""
        with self._lock:
            self._expected[state.name] = (state.session_epoch, self._clock())
            self._states[state.name] = (state, self._clock())

    def __setitem__(self, token: str, name: str) -> None:
        with self._lock:
            epoch, when = self._expected.get(name, (None, 0.0))
            now = self._clock()
            if epoch is None or now - when > EXPECT_S:  # not through our password check: never valid
                logger.warning("refused a session for %r that did not pass the sign-in check", name)
                return
            for t in [t for t, e in self._entries.items() if now - e.last_seen > self.idle_s]:
                del self._entries[t]  # sessions nobody came back to: forgotten at the next sign-in
            self._entries[token] = _Entry(name, epoch, now)

    def rebind(self, token: str, state: AccountState) -> None:
        """Keep the session ``token`` valid in the account's new epoch (after its own password change)."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is not None and entry.name == state.name:
                entry.epoch = state.session_epoch
            self._states[state.name] = (state, self._clock())

    # ---- account state ----------------------------------------------------------------------------------------
    def name_of(self, token: str | None) -> str | None:
        """The account a token was issued to, valid or not (the middleware refreshes that account's state)."""
        with self._lock:
            entry = self._entries.get(token) if token else None
            return entry.name if entry else None

    def state_is_stale(self, name: str) -> bool:
        with self._lock:
            got = self._states.get(name)
            return got is None or self._clock() - got[1] >= self.state_ttl_s

    def stale_names(self) -> set[str]:
        """The accounts with a session in this table whose state is due to be read again (one read serves all)."""
        with self._lock:
            now = self._clock()
            return {e.name for e in self._entries.values()
                    if (got := self._states.get(e.name)) is None or now - got[1] >= self.state_ttl_s}

    def set_state(self, name: str, state: AccountState | None) -> None:
        with self._lock:
            self._states[name] = (state, self._clock())

    def set_states(self, states: dict[str, AccountState | None], read_at: float | None = None) -> None:
        """Store states read together; ``read_at`` (this table's clock, before the read began) is when they count
        from, so a state is never taken as fresher than its read. A state this process set since (a sign-in, a
        change it made) is newer and kept."""
        with self._lock:
            when = self._clock() if read_at is None else read_at
            for name, state in states.items():
                got = self._states.get(name)
                if (got is None or got[1] <= when) and self._changed.get(name, -float("inf")) < when:
                    self._states[name] = (state, when)

    def now(self) -> float:
        return self._clock()

    def forget_state(self, name: str) -> None:
        """This process changed the account: the next request reads its state again."""
        with self._lock:
            self._states.pop(name, None)
            self._changed[name] = self._clock()  # a read that began before this change must not put it back

    def state(self, name: str) -> AccountState | None:
        with self._lock:
            got = self._states.get(name)
            return got[0] if got else None

    def fresh_state(self, name: str) -> tuple[bool, AccountState | None]:
        """(True, the account's state) when it was read from the store less than ``state_ttl_s`` ago (None: no
        such account), else (False, None): the caller reads the store itself."""
        with self._lock:
            got = self._states.get(name)
            if got is None or self._clock() - got[1] >= self.state_ttl_s:
                return False, None
            return True, got[0]

    # ---- lookups (Gradio's user resolution) ---------------------------------------------------------------------
    def check(self, token: str | None) -> tuple[str | None, str]:
        """(account name, "ok") for a valid token, else (None, why): "unknown", "idle", "inactive", "epoch"
        (ended by a deactivation or a new password), which forget the token, or "unchecked" (the account's state
        was not read: refused this time only)."""
        if not token:
            return None, "unknown"
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None, "unknown"
            now = self._clock()
            got = self._states.get(entry.name)
            if got is None and now - entry.last_seen <= self.idle_s:
                return None, "unchecked"  # the caller did not read the account's state: refuse, keep the token
            state = got[0] if got else None
            why = ("idle" if now - entry.last_seen > self.idle_s else
                   "inactive" if state is None or not state.active else
                   "epoch" if state.session_epoch != entry.epoch else "ok")
            if why != "ok":
                del self._entries[token]
                logger.info("session of %r ended (%s)", entry.name, why)
                return None, why
            entry.last_seen = now
            return entry.name, "ok"

    def get(self, token: str | None, default: str | None = None) -> str | None:  # type: ignore[override]
        name, _ = self.check(token)
        return name if name is not None else default

    def __getitem__(self, token: str) -> str:
        with self._lock:
            return self._entries[token].name  # Gradio's logout compares names of every token

    def __delitem__(self, token: str) -> None:
        with self._lock:
            del self._entries[token]

    def __contains__(self, token: object) -> bool:
        with self._lock:
            return token in self._entries

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def end_sessions(self, name: str) -> int:
        """End every session of the account (this process); the number ended."""
        with self._lock:
            tokens = [t for t, e in self._entries.items() if e.name == name]
            for t in tokens:
                del self._entries[t]
            return len(tokens)


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 5  # failures in a row before attempts are refused for a while
    base_s: float = 2.0  # the first wait; it doubles with each further failure
    cap_s: float = 300.0  # the longest wait
    forget_s: float = 900.0  # a count is forgotten this long after its last failure

    def wait_s(self, failures: int) -> float:
        if failures < self.free_failures:
            return 0.0
        return min(self.cap_s, self.base_s * 2.0 ** min(failures - self.free_failures, 30))


class SignInThrottle:
    """Failed sign-ins per account name and per client address (see the module's docstring); in memory, at most
    ``max_keys`` of each kind (the oldest are dropped)."""

    def __init__(self, per_name: ThrottlePolicy = ThrottlePolicy(),
                 per_address: ThrottlePolicy = ThrottlePolicy(free_failures=20), *,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self.policies = {"name": per_name, "address": per_address}
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], tuple[int, float]] = {}  # key -> (failures, time of the last one)

    def _get(self, kind: Literal["name", "address"], key: str, now: float) -> tuple[int, float]:
        failures, last = self._counts.get((kind, key), (0, now))
        if failures and now - last > self.policies[kind].forget_s:
            self._counts.pop((kind, key), None)
            return 0, now
        return failures, last

    def retry_after(self, name: str, address: str) -> float:
        """Seconds until a sign-in for ``name`` from ``address`` may be tried; 0 when it may be now."""
        now = self._clock()
        with self._lock:
            waits = []
            for kind, key in (("name", name), ("address", address)):
                failures, last = self._get(kind, key, now)
                waits.append(last + self.policies[kind].wait_s(failures) - now if failures else 0.0)
            return max(0.0, *waits)

    def failure(self, name: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            for kind, key in (("name", name), ("address", address)):
                failures, _ = self._get(kind, key, now)
                self._counts.pop((kind, key), None)
                self._counts[(kind, key)] = (failures + 1, now)  # re-inserted: the dict is oldest-first
            while len(self._counts) > 2 * self._max_keys:
                self._counts.pop(next(iter(self._counts)))

    def success(self, name: str) -> None:
        with self._lock:
            self._counts.pop(("name", name), None)
