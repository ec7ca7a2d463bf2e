"""db.prepared: the request path's statements run on the driver's connection must do exactly what SQLAlchemy's
own execution does, on SQLite and on PostgreSQL (``TEST_POSTGRES_URL``)."""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import bindparam, create_engine, insert, select, text
from sqlalchemy.exc import ArgumentError, IntegrityError

import db.prepared as prepared
from annotation.accounts import create_rater
from annotation.tasks import next_task, skip, submit
from annotation.views import my_work, rater_progress
from conftest import make_store, seeded_project, tiny_flow_engine
from db.engine import session_scope
from db.models import Assignment, AssignmentStatus, AuditLog, LRImage, Pick, Rater, Reading, Sample
from db.prepared import Prepared, insert_values


@pytest.fixture(params=["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """A function that makes a fresh store (session factory) on this backend; all are dropped afterwards."""
    made = []
    if request.param == "sqlite-file":
        def new():
            eng, factory = make_store(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.sqlite'}")
            made.append((eng, None))
            return factory
    else:
        base = os.environ.get("TEST_POSTGRES_URL")
        if not base:
            pytest.skip("TEST_POSTGRES_URL is not set")
        admin = create_engine(base)

        def new():
            schema = f"sr_test_{uuid.uuid4().hex[:10]}"
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            sep = "&" if "?" in base else "?"
            eng, factory = make_store(f"{base}{sep}options={quote(f'-csearch_path={schema}')}")
            made.append((eng, schema))
            return factory
    yield new
    for eng, schema in made:
        eng.dispose()
        if schema is not None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    if request.param != "sqlite-file":
        admin.dispose()


def _scenario(factory) -> dict:
    """Serving, submitting (one late, after its lease ran out and was taken back), skipping, gold items, the
    consensus update, progress and "my work", all at fixed times; what the services answered and the tables."""
    random.seed(7)  # the free slot a lease takes is a random one
    engine = tiny_flow_engine()
    pid = seeded_project(factory, engine, n_images=5, gold=1, raters_per_image=2, gold_rate=0.25)
    t0 = datetime(2026, 3, 1, 12, 0, 0, 123456)
    out: dict = {"answers": []}
    say = out["answers"].append
    with session_scope(factory) as s:
        ids = [create_rater(s, f"r{i}", "rater", "pw-123456").id for i in range(3)]
    for step in range(3):
        for i, rid in enumerate(ids):
            now = t0 + timedelta(seconds=10 * step + i)
            with session_scope(factory) as s:
                task = next_task(s, rid, pid, now=now)
                say(("task", rid, task and asdict(task)))
                if task is None:
                    continue
                if (step, i) == (1, 2):
                    say(("skip", asdict(skip(s, rid, task.assignment_id, "can't tell", now=now))))
                elif (step, i) != (2, 1):  # rater 1's third task is left to expire
                    picks = [task.samples[1].sample_id, task.samples[0].sample_id]
                    say(("submit", asdict(submit(s, rid, task.assignment_id, picks, "5", now=now))))
                    say(("replay", asdict(submit(s, rid, task.assignment_id, picks, "5", now=now))))
                say(("progress", rid, rater_progress(s, rid, pid)))
                say(("work", rid, [asdict(w) for w in my_work(s, rid, pid, now=now)]))
    late = t0 + timedelta(hours=2)
    with session_scope(factory) as s:  # rater 0 asks after rater 1's lease ran out: it is expired (slot freed)
        task = next_task(s, ids[0], pid, now=late)
        say(("task", ids[0], task and asdict(task)))
    with session_scope(factory) as s:  # rater 1 submits late: the freed slot is taken back
        a = s.scalars(select(Assignment).where(Assignment.rater_id == ids[1],
                                               Assignment.status == AssignmentStatus.expired)).first()
        if a is not None:
            sample_ids = s.scalars(select(Sample.id).where(Sample.bank_id == a.bank_id).order_by(Sample.id)).all()
            say(("late", asdict(submit(s, ids[1], a.id, sample_ids[:2], "6", now=late))))
    with session_scope(factory, write=False) as s:
        for model in (Assignment, Pick, Reading, LRImage):  # every column but the set-up's clock
            cols = [c for c in model.__table__.columns if c.key not in ("png", "created_at")]
            out[model.__tablename__] = [tuple(r) for r in s.execute(select(*cols).order_by(cols[0])).all()]
        # the services' entries in full (the set-up's carry its own clock and timings)
        out["audit_log"] = [(r.id, r.action) + ((r.entity, r.entity_id, r.actor_id, r.project_id, r.details, r.at)
                                                if r.action.startswith("assignment.") else ())
                            for r in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    return out


def test_the_request_path_leaves_the_same_store_as_sqlalchemys_execution(store, monkeypatch):
    fast = _scenario(store())
    monkeypatch.setattr(prepared, "FAST_DRIVERS", set())  # every Prepared statement through Session.execute
    slow = _scenario(store())
    assert fast["answers"] == slow["answers"]
    for table in ("assignments", "picks", "readings", "lr_images", "audit_log"):
        assert fast[table] == slow[table], table
    assert any(a[0] == "late" for a in fast["answers"])  # the expired-lease path ran
    assert any(a[0] == "skip" for a in fast["answers"])
    assert any(a[0] == "task" and a[2] and a[2]["image_id"] == min(r[0] for r in fast["lr_images"])
               for a in fast["answers"])  # the gold item (the first image) was served


def test_types_round_trip_and_errors_are_sqlalchemys(store):
    factory = store()
    t = Rater.__table__
    new = Prepared(insert_values(t, "name", "role", "secret_hash", "active", "created_at", "session_epoch",
                                 "must_change_password").returning(t.c.id))
    get = Prepared(select(t.c.id, t.c.name, t.c.role, t.c.active, t.c.created_at, t.c.must_change_password,
                          t.c.last_sign_in_at).where(t.c.name == bindparam("name")))
    at = datetime(2026, 5, 6, 7, 8, 9, 101112)
    row = dict(name="ana", role="analyst", secret_hash="x", active=False, created_at=at, session_epoch=0,
               must_change_password=True)
    with session_scope(factory) as s:
        rid = new.run(s, row).scalar()
        got = get.run(s, {"name": "ana"}).one()
        assert got == tuple(s.execute(get.stmt, {"name": "ana"}).one())  # converted as SQLAlchemy converts
        assert (got.id, got.name, got.role.value, got.active, got.created_at, got.last_sign_in_at) == (
            rid, "ana", "analyst", False, at, None)
        with pytest.raises(IntegrityError):  # the driver's error, as SQLAlchemy raises it
            with s.begin_nested():
                new.run(s, row)
        assert get.run(s, {"name": "ana"}).scalars() == [rid]  # the transaction is still usable
    with pytest.raises(RuntimeError):  # a Prepared write rolls back with its transaction
        with session_scope(factory) as s:
            new.run(s, dict(row, name="bo"))
            raise RuntimeError
    with session_scope(factory, write=False) as s:
        assert get.run(s, {"name": "bo"}).first() is None
        with pytest.raises(Exception, match="no row"):
            get.run(s, {"name": "bo"}).one()


def test_statements_that_need_sqlalchemy_at_execution_are_refused(store):
    factory = store()
    t = Rater.__table__
    with session_scope(factory) as s:
        with pytest.raises(ValueError, match="expanding"):
            Prepared(select(t.c.id).where(t.c.id.in_(bindparam("ids", expanding=True)))).run(s, {"ids": [1]})
        with pytest.raises(ArgumentError, match="rater_id"):  # a named parameter left out
            Prepared(select(t.c.id).where(t.c.id == bindparam("rater_id"))).run(s, {"other": 1})
        with pytest.raises(ValueError, match="created_at"):  # a Python-side default SQLAlchemy would fill in
            Prepared(insert(t).values(name=bindparam("name"), secret_hash=bindparam("h"))).run(
                s, {"name": "x", "h": "y"})
