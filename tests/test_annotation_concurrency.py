"""50 threads serving and submitting at once for different raters: every submission stored once, none lost, none
doubled, no image over its raters_per_image. On one SQLite file always; on PostgreSQL too when
TEST_POSTGRES_URL is set (a throwaway schema is created in that database and dropped afterwards)."""

from __future__ import annotations

import os
import threading
import uuid
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, func, select, text

from annotation.accounts import create_rater
from annotation.tasks import next_task, submit
from conftest import make_store, seeded_project, tiny_flow_engine
from db.engine import session_scope
from db.models import Assignment, AssignmentStatus, AuditLog, Pick, Reading

THREADS = 50
IMAGES = 5
PER_IMAGE = 10  # 5 images x 10 slots = 50: exactly one task per rater


@pytest.fixture(scope="module")
def engine():
    return tiny_flow_engine()


def _sqlite(tmp_path):
    eng, factory = make_store(f"sqlite:///{tmp_path / 'concurrency.sqlite'}")
    yield factory
    eng.dispose()


def _postgres():
    base = os.environ.get("TEST_POSTGRES_URL")
    if not base:
        pytest.skip("TEST_POSTGRES_URL is not set")
    schema = f"sr_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    eng, factory = make_store(f"{base}{sep}options={quote(f'-csearch_path={schema}')}")
    try:
        yield factory
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def factory(request, tmp_path):
    yield from (_sqlite(tmp_path) if request.param == "sqlite-file" else _postgres())


def _run_threads(fn, n):
    barrier = threading.Barrier(n)
    errors, results = [], [None] * n

    def work(i):
        try:
            barrier.wait(timeout=60)
            results[i] = fn(i)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append((i, repr(err)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:5]
    return results


@pytest.mark.parametrize("overlap", [{}, {"min_raters": 2, "resolve_threshold": 0.5}], ids=["fixed", "adaptive"])
def test_fifty_raters_at_once(factory, engine, overlap):
    """Fixed overlap, and adaptive (issue 16: every submit updates its image's consensus and now and then refits
    the project, inside the submit's transaction): the same guarantees."""
    pid = seeded_project(factory, engine, n_images=IMAGES, raters_per_image=PER_IMAGE, name="concurrent", **overlap)
    with session_scope(factory) as s:
        raters = [create_rater(s, f"rater '{i}'; DROP TABLE picks;--").id for i in range(THREADS + 5)]

    def serve(i):
        with session_scope(factory) as s:
            t = next_task(s, raters[i], pid)
            return None if t is None else (t.assignment_id, [x.sample_id for x in t.samples[:2]])

    tasks = _run_threads(serve, THREADS)
    assert all(t is not None for t in tasks)  # 50 slots for 50 raters: nobody is turned away

    def send(i):
        aid, picks = tasks[i]
        out = []
        for _ in range(2):  # a double click: the second is a replay
            with session_scope(factory) as s:
                out.append(submit(s, raters[i], aid, picks, f"<i>{i % 3}</i>"))
        return out

    results = _run_threads(send, THREADS)
    assert all(not a.replayed and b.replayed for a, b in results)

    late = _run_threads(serve, 5)  # everything is taken now
    assert late == [None] * 5

    with session_scope(factory) as s:
        rows = s.execute(select(Assignment.image_id, func.count()).where(
            Assignment.status == AssignmentStatus.submitted).group_by(Assignment.image_id)).all()
        assert sorted(c for _, c in rows) == [PER_IMAGE] * IMAGES
        assert s.scalar(select(func.count()).select_from(Assignment)) == THREADS
        assert s.scalar(select(func.count(func.distinct(Assignment.rater_id)))) == THREADS
        assert s.scalar(select(func.count()).select_from(Pick)) == 2 * THREADS
        assert s.scalar(select(func.count()).select_from(Reading)) == THREADS
        assert s.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "assignment.submitted")) == THREADS
        for i, (aid, picks) in enumerate(tasks):
            stored = s.scalars(select(Pick.sample_id).where(Pick.assignment_id == aid).order_by(Pick.rank)).all()
            assert stored == picks
            assert s.scalar(select(Reading.text).where(Reading.assignment_id == aid)) == f"<i>{i % 3}</i>"
