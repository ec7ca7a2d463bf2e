"""Prebuilt Core statements run on the session's own DB-API connection: the request path's statements, without
SQLAlchemy's per-execution machinery.

A submission runs about twenty short statements, and SQLAlchemy's Python around each one (its execution context,
parameter handling and result wrapping) costs several times what the driver's call costs; all of it holds the
interpreter lock, which is what a burst of raters queues for (``python -m ui.submit_cost`` and
``docs/annotation.md`` have the figures). :class:`Prepared` keeps SQLAlchemy as the one definition of every
statement and type: it compiles the statement once per dialect with SQLAlchemy's compiler, takes the column types'
own bind and result converters (``TypeEngine.bind_processor`` / ``result_processor``: the same conversions
SQLAlchemy applies, e.g. SQLite's datetime strings, JSON, enums, booleans), and then runs the compiled SQL on the
driver's connection of the session's current transaction (so it commits, rolls back and takes locks with the rest
of the transaction). Driver errors are raised as SQLAlchemy's exceptions (``IntegrityError``, ``OperationalError``,
...), as ``Session.execute`` would raise them.

Drivers: SQLite's ``sqlite3`` and PostgreSQL's ``psycopg``; any other backend runs the statement through
``Session.execute`` unchanged, with the same results. A statement that needs SQLAlchemy at execution time
(expanding ``IN`` lists, post-compile parameters, Python-side column defaults of an INSERT) is refused when it is
first run on a fast path, so a change that makes it so fails in the tests, not in production.

The session's ORM objects do not see these writes: callers mirror what they change into objects the session may
hold, as ``annotation.tasks`` does, and flush the session before a read that must see pending ORM changes.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, exc, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable
from sqlalchemy.sql.dml import Insert, UpdateBase

FAST_DRIVERS = {("sqlite", "pysqlite"), ("postgresql", "psycopg")}


class Rows:
    """The rows (named tuples) of one execution, with the parts of SQLAlchemy's ``Result`` the callers use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[tuple], rowcount: int = -1):
        self._rows, self.rowcount = rows, rowcount

    def all(self) -> list[tuple]:
        return self._rows

    def first(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def one(self) -> tuple:
        if len(self._rows) != 1:
            raise exc.NoResultFound("no row was found") if not self._rows else exc.MultipleResultsFound(
                "more than one row was found")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalars(self) -> list[Any]:
        return [r[0] for r in self._rows]


class _Plan:
    """One statement compiled for one dialect: its SQL, parameter order and converters, and its row type."""

    def __init__(self, stmt: Executable, dialect: Dialect):
        compiled = stmt.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a prepared statement cannot have expanding or post-compile parameters")
        if getattr(compiled, "escaped_bind_names", None):
            raise ValueError("a prepared statement's parameter names must need no escaping")
        prefetch = [c.key for c in getattr(compiled, "insert_prefetch", ())]
        if prefetch:  # SQLAlchemy would compute these columns' Python-side defaults for each execution
            raise ValueError(f"a prepared INSERT must give every column with a Python-side default a value "
                             f"({', '.join(prefetch)})")
        self.sql = compiled.string
        # the statement's own bound values (status = 'served', LIMIT 25); the caller gives the named ones
        self.defaults = {name: b.effective_value for name, b in compiled.binds.items() if not b.required}
        self.positional = tuple(compiled.positiontup) if dialect.positional else None
        self.names = frozenset(compiled.binds)
        self.binds: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                self.binds[name] = proc
        cols = list(stmt.exported_columns if isinstance(stmt, UpdateBase) else stmt.selected_columns)
        self.row = self.results = None
        self._types = [c.type.dialect_impl(dialect) for c in cols]
        self._dialect = dialect
        if cols:
            names = [getattr(c, "key", None) or f"c{i}" for i, c in enumerate(cols)]
            self.row = namedtuple("Row", names, rename=True)

    def params(self, values: Mapping[str, Any]) -> Sequence | dict:
        p = dict(self.defaults)
        p.update(values)
        missing = self.names.difference(p)
        if missing:
            raise exc.ArgumentError(f"a value is required for the parameter(s) {', '.join(sorted(missing))}")
        if len(p) != len(self.names):  # values the statement does not take
            p = {name: p[name] for name in self.names}
        for name, proc in self.binds.items():
            p[name] = proc(p[name])
        return [p[name] for name in self.positional] if self.positional is not None else p

    def rows(self, raw: list[tuple], description: Sequence) -> list[tuple]:
        procs = self.results
        if procs is None:  # the converters, once: some depend on the driver's type code of the column (PG numbers)
            procs = [t.result_processor(self._dialect, d[1]) for t, d in zip(self._types, description)]
            self.results = procs = procs if any(f is not None for f in procs) else ()
        if not procs:
            return [self.row._make(r) for r in raw]
        return [self.row._make([v if f is None else f(v) for f, v in zip(procs, r)]) for r in raw]


class Prepared:
    """A Core statement (built once, at import) that runs on the driver's connection: see the module docstring.

    ``run(session, params)`` returns :class:`Rows` (``.all()``, ``.first()``, ``.one()``, ``.scalar()``,
    ``.scalars()``, ``.rowcount``); ``run_many(session, [params, ...])`` runs a write for each mapping."""

    def __init__(self, stmt: Executable):
        self.stmt = stmt
        self._plans: dict[tuple[str, str, str], _Plan] = {}
        self._lock = threading.Lock()

    def _plan(self, dialect: Dialect) -> _Plan | None:
        """The statement compiled for ``dialect``; None for a driver without a fast path (see the module)."""
        if (dialect.name, dialect.driver) not in FAST_DRIVERS:
            return None
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        plan = self._plans.get(key)
        if plan is None:
            with self._lock:
                plan = self._plans.get(key) or _Plan(self.stmt, dialect)
                self._plans[key] = plan
        return plan

    def run(self, session: Session, params: Mapping[str, Any] | None = None) -> Rows:
        conn = session.connection()
        plan = self._plan(conn.dialect)
        if plan is None:
            return session.execute(self.stmt, dict(params or {}))
        args = plan.params(params or {})
        cur = conn.connection.driver_connection.cursor()
        try:
            try:
                cur.execute(plan.sql, args)
            except conn.dialect.loaded_dbapi.Error as err:
                raise _wrapped(err, plan, args, conn.dialect) from err
            if plan.row is not None:  # a SELECT, or a write with RETURNING
                return Rows(plan.rows(cur.fetchall(), cur.description))
            return Rows([], cur.rowcount)
        finally:
            cur.close()

    def run_many(self, session: Session, params: Sequence[Mapping[str, Any]]) -> None:
        conn = session.connection()
        plan = self._plan(conn.dialect)
        if plan is None:
            session.execute(self.stmt, [dict(p) for p in params])
            return
        args = [plan.params(p) for p in params]
        cur = conn.connection.driver_connection.cursor()
        try:
            cur.executemany(plan.sql, args)
        except conn.dialect.loaded_dbapi.Error as err:
            raise _wrapped(err, plan, args, conn.dialect) from err
        finally:
            cur.close()


def insert_values(table: Table, *columns: str) -> Insert:
    """``INSERT INTO table (columns) VALUES (:column, ...)``, each parameter typed as its column: what a
    :class:`Prepared` INSERT gives every execution (columns left out get the database's defaults)."""
    return insert(table).values({c: bindparam(c, type_=table.c[c].type) for c in columns})


def _wrapped(err: Exception, plan: _Plan, args: Any, dialect: Dialect) -> exc.DBAPIError:
    """The driver's error as SQLAlchemy raises it (``IntegrityError``, ``OperationalError``, ...)."""
    return exc.DBAPIError.instance(plan.sql, args, err, dialect.loaded_dbapi.Error, dialect=dialect)


__all__ = ["FAST_DRIVERS", "Prepared", "Rows", "insert_values"]
