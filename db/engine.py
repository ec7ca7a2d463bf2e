"""Database engines and sessions: an embedded SQLite file by default, any SQLAlchemy URL through one setting.

    from db.engine import make_engine, make_session_factory, session_scope
    engine = make_engine()                       # $SR_DB_URL, else sqlite:///<repo>/data/annotation.sqlite
    Session = make_session_factory(engine)
    with session_scope(Session) as session:      # commits on success, rolls back on any exception
        ...                                      # services take `session` first and never commit

SQLite gets WAL (readers never block the writer), foreign keys on (SQLite leaves them off otherwise) and a busy
timeout. A write scope (the default) starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, so a
read-then-write transaction (serving the last slot of an image, a submission) cannot be overtaken between its
read and its write; other writers wait up to the busy timeout instead of failing. A read-only scope
(``session_scope(factory, write=False)``) starts with a plain deferred ``BEGIN`` and never takes the write lock:
under WAL it reads its snapshot while a writer holds the lock. The busy timeout is the engine's
(``make_engine(busy_timeout_ms=...)``; the app's interactive requests wait a few seconds, then :func:`is_busy`
tells them to answer "busy, try again") unless a scope gives its own (background jobs wait longer). Within one
process, SQLite write scopes also queue on a lock of their own (same timeout): a waiting thread starts the moment
the writer before it commits, instead of polling SQLite's lock with growing sleeps (up to 100 ms each), which
under 50 concurrent submissions made some wait for seconds.
PostgreSQL runs at its default isolation; the services there rely on unique constraints and row locks
(``SELECT ... FOR UPDATE``), and every transaction sets ``lock_timeout`` to the same busy timeout, so a request
waits for a held row lock at most that long before :func:`is_busy` says "busy, try again".
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

DB_URL_ENV = "SR_DB_URL"  # the one setting: any SQLAlchemy URL
BUSY_TIMEOUT_MS = 30_000  # scripts and background jobs: wait for the write lock this long
READ_ONLY = "sr_read_only"  # connection execution option: begin a deferred (read-only) transaction
BUSY_TIMEOUT = "sr_busy_timeout_ms"  # connection execution option: this transaction's busy timeout
SQLITE_POOL = 40  # connections kept open per SQLite file engine (the app runs up to 40 request threads)
_SET_TIMEOUT = "sr_busy_timeout_set"  # connection info: the busy timeout the SQLite connection has now


def default_url() -> str:
    """``$SR_DB_URL`` if set, else an SQLite file in the repository's ``data/`` folder."""
    env = os.environ.get(DB_URL_ENV)
    if env:
        return env
    path = Path(__file__).resolve().parents[1] / "data" / "annotation.sqlite"
    return f"sqlite:///{path}"


class FairLock:
    """A reentrant lock granted in arrival order: a waiter gets it before anyone who asked later, so under a
    burst of writers each waits for those ahead of it only (``threading.RLock`` wakes an arbitrary waiter, and
    one unlucky request could wait out its busy timeout while later ones pass)."""

    def __init__(self):
        self._mutex = threading.Lock()
        self._owner: object = None  # a thread id, or a waiter's gate while the lock is handed over to it
        self._depth = 0
        self._gates: collections.deque[threading.Lock] = collections.deque()
        self._free_since = time.monotonic()  # when the lock was last released with no one waiting

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._gates:
                self._owner, self._depth = me, 1
                return True
            if not blocking or timeout == 0:
                return False
            gate = threading.Lock()
            gate.acquire()
            self._gates.append(gate)
        gate.acquire(timeout=timeout if timeout is not None and timeout >= 0 else -1)
        with self._mutex:
            if self._owner is gate:  # handed over (perhaps just as the wait timed out: it is ours all the same)
                self._owner, self._depth = me, 1
                return True
            self._gates.remove(gate)  # timed out and never handed over: leave the line
            return False

    def busy(self) -> bool:
        """Whether a thread holds the lock or waits for it (a hint: it may change at once)."""
        with self._mutex:
            return self._owner is not None or bool(self._gates)

    def idle_for(self) -> float:
        """Seconds since the lock was last free of holders and waiters; 0.0 while it is held or waited for."""
        with self._mutex:
            if self._owner is not None or self._gates:
                return 0.0
            return time.monotonic() - self._free_since

    def release(self) -> None:
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a lock this thread does not hold")
            self._depth -= 1
            if self._depth:
                return
            if self._gates:
                gate = self._gates.popleft()
                self._owner = gate
                gate.release()
            else:
                self._owner = None
                self._free_since = time.monotonic()


# SQLite engines -> (the process's write lock for that database, the engine's busy timeout in ms)
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, tuple[FairLock, int]] = weakref.WeakKeyDictionary()


class StoreBusy(RuntimeError):
    """A write scope waited its busy timeout for the store's write lock (see :func:`is_busy`)."""


def _sqlite_setup(engine: Engine, busy_timeout_ms: int, wal: bool) -> None:
    _WRITE_LOCKS[engine] = (FairLock(), int(busy_timeout_ms))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        # take transaction control from the driver (pysqlite's own BEGIN handling breaks savepoints and
        # starts transactions lazily, after the reads); see SQLAlchemy's "Serializable isolation" recipe
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        _record.info[_SET_TIMEOUT] = int(busy_timeout_ms)
        if wal:
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        opts = conn.get_execution_options()
        # every transaction gets its own timeout (a pooled connection must not keep another scope's); the
        # connection remembers the one it has, so the PRAGMA runs only when it changes
        ms = int(opts.get(BUSY_TIMEOUT, busy_timeout_ms))
        if conn.info.get(_SET_TIMEOUT) != ms:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {ms}")
            conn.info[_SET_TIMEOUT] = ms
        conn.exec_driver_sql("BEGIN" if opts.get(READ_ONLY) else "BEGIN IMMEDIATE")


def writers_active(factory: sessionmaker[Session], quiet_s: float = 0.0) -> bool:
    """Whether a write scope of this process holds or waits for the store's write lock, or released it less than
    ``quiet_s`` seconds ago (SQLite files; always False for other backends): background work can wait for a quiet
    moment instead of competing with requests. ``quiet_s`` bridges the gaps of a burst, where the lock is free for
    the moment between one request's commit and the next one's arrival."""
    held = _WRITE_LOCKS.get(factory.kw.get("bind"))
    if held is None:
        return False
    return held[0].busy() if quiet_s <= 0 else held[0].idle_for() < quiet_s


def make_engine(url: str | None = None, *, echo: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    """An engine for ``url`` (default :func:`default_url`).

    ``sqlite://`` (in memory) shares one connection (StaticPool), so every session sees the same database; use it
    from one thread at a time (tests). A file gets WAL, foreign keys and the busy timeout and is safe from many
    threads and processes; other backends get ``pool_pre_ping``.
    """
    url = url or default_url()
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        memory = u.database in (None, "", ":memory:")
        if memory:
            engine = create_engine(url, echo=echo, poolclass=StaticPool,
                                   connect_args={"check_same_thread": False})
        else:
            Path(u.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            # a pool as deep as the app's request threads: a burst of requests reuses open connections instead
            # of opening (and setting up) overflow connections that are closed again after one transaction
            # LIFO: a transaction gets the connection used last, whose page cache is warm (SQLite empties a
            # connection's cache when another connection has written since its last transaction)
            engine = create_engine(url, echo=echo, pool_size=SQLITE_POOL, max_overflow=SQLITE_POOL,
                                   pool_use_lifo=True,
                                   connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000})
        _sqlite_setup(engine, busy_timeout_ms, wal=not memory)
        return engine
    engine = create_engine(url, echo=echo, pool_pre_ping=True)
    if u.get_backend_name() == "postgresql":
        _postgres_setup(engine, busy_timeout_ms)
    return engine


def _postgres_setup(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        # the same rule as SQLite's busy timeout: a transaction waits this long for a lock another holds, then
        # fails with "lock timeout" (is_busy), so an interactive request answers "busy, try again" in seconds
        ms = int(conn.get_execution_options().get(BUSY_TIMEOUT, busy_timeout_ms))
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(ms, 1)}")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """The one sessionmaker. ``expire_on_commit=False``: results stay readable after the caller commits."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def is_busy(err: BaseException) -> bool:
    """True for the error a transaction gets when the write lock stayed taken past its busy timeout (SQLite's
    "database is locked" / "database is busy", PostgreSQL's lock timeout): the request should answer "busy, try
    again"."""
    if isinstance(err, StoreBusy):
        return True
    if not isinstance(err, OperationalError):
        return False
    msg = str(err.orig if err.orig is not None else err).lower()
    return ("database is locked" in msg or "database is busy" in msg or "database table is locked" in msg
            or "lock timeout" in msg)  # PostgreSQL: lock_timeout (SQLSTATE 55P03)


@contextmanager
def session_scope(factory: sessionmaker[Session], *, write: bool = True,
                  busy_timeout_ms: int | None = None) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back (and re-raise) on any exception.

    ``write=False``: a read-only scope (SQLite: a deferred ``BEGIN``, so it never waits for the write lock).
    ``busy_timeout_ms``: how long this transaction waits for the write lock (default: the engine's); past it,
    :class:`StoreBusy` or SQLite's "database is locked" (:func:`is_busy`)."""
    held = _WRITE_LOCKS.get(factory.kw.get("bind")) if write else None
    if held is not None:
        lock, default_ms = held
        wait_ms = default_ms if busy_timeout_ms is None else busy_timeout_ms
        if not lock.acquire(timeout=max(wait_ms, 0) / 1000):
            raise StoreBusy(f"the store's write lock stayed taken for {wait_ms / 1000:g} s")
    try:
        with _transaction(factory, write, busy_timeout_ms) as session:
            yield session
    finally:
        if held is not None:
            held[0].release()


@contextmanager
def _transaction(factory: sessionmaker[Session], write: bool, busy_timeout_ms: int | None) -> Iterator[Session]:
    session = factory()
    opts: dict = {}
    if not write:
        opts[READ_ONLY] = True
    if busy_timeout_ms is not None:
        opts[BUSY_TIMEOUT] = int(busy_timeout_ms)
    try:
        if opts:  # before the first statement: the "begin" event reads them
            session.connection(execution_options=opts)
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()

