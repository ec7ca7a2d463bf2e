"""The store's schema: migrating an empty database gives exactly the models' schema (SQLite file; PostgreSQL when
TEST_POSTGRES_URL is set), the engine's SQLite settings, sessions, the invariants the database enforces, and the
layering (db imports neither annotation nor sr_engine; nothing imports gradio)."""

from __future__ import annotations

import ast
import os
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, DBAPIError

from conftest import make_store
from db.engine import make_engine, make_session_factory, session_scope
from db.migrations import current_revision, downgrade, upgrade
from db.models import (Assignment, AuditLog, Bank, BankStatus, Base, LRImage, Pick, Project, Rater, Sample,
                       SampleMode, utcnow)

ROOT = Path(__file__).resolve().parents[1]
HEAD = "0005"  # the newest migration


def _schema(engine):
    insp = inspect(engine)
    out = {}
    for t in insp.get_table_names():
        if t == "alembic_version":
            continue
        out[t] = {
            "columns": {c["name"]: (str(c["type"]).split("(")[0], c["nullable"]) for c in insp.get_columns(t)},
            "unique": sorted(u["name"] for u in insp.get_unique_constraints(t)),
            "checks": sorted(c["name"] for c in insp.get_check_constraints(t)),
            "fks": sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"],
                           (f.get("options") or {}).get("ondelete")) for f in insp.get_foreign_keys(t)),
            "indexes": sorted(i["name"] for i in insp.get_indexes(t)),
        }
    return out


def _check_migration(url):
    upgrade(url)
    migrated = make_engine(url)
    try:
        assert current_revision(migrated) == HEAD
        with migrated.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                    Base.metadata) == []
        assert set(inspect(migrated).get_table_names()) - {"alembic_version"} == set(Base.metadata.tables)
        return _schema(migrated)
    finally:
        migrated.dispose()


def test_migrating_an_empty_sqlite_file_gives_the_models_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'migrated.sqlite'}"
    migrated = _check_migration(url)
    eng, _ = make_store(f"sqlite:///{tmp_path / 'created.sqlite'}")
    assert migrated == _schema(eng)
    eng.dispose()
    upgrade(url)  # idempotent
    downgrade(url)
    eng = make_engine(url)
    assert set(inspect(eng).get_table_names()) <= {"alembic_version"}
    eng.dispose()


def test_0002_keeps_existing_projects_and_gives_them_no_engine_options(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    upgrade(url, "0001")
    eng = make_engine(url)
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO projects (name, model_name, scale, channels, bank_size, k_picks, "
                          "raters_per_image, ensemble_size, steps, mode, scheduler, seed, gold_rate, "
                          "revision_window_s, lease_s, max_lr_side, created_at) VALUES ('old', 'mnist-x4', 4, 1, 8, "
                          "2, 2, 2, 2, 'strict', 'ddim', 0, 0, 600, 900, 128, '2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO lr_images (project_id, content_sha256, source, png, width, height, channels, "
                          "is_gold, created_at) VALUES (1, 'h', 's', x'00', 4, 4, 1, 0, '2026-01-01 00:00:00')"))
    eng.dispose()
    upgrade(url)
    eng = make_engine(url)
    with session_scope(make_session_factory(eng)) as s:
        assert s.get(Project, 1).engine_options == {} and s.scalar(select(LRImage.id)) == 1
    eng.dispose()
    downgrade(url, "0001")  # in place: the project and its image stay
    eng = make_engine(url)
    with eng.connect() as conn:
        assert "engine_options" not in {c["name"] for c in inspect(conn).get_columns("projects")}
        assert conn.execute(text("SELECT count(*) FROM lr_images")).scalar() == 1
    eng.dispose()


@pytest.mark.postgres
def test_migrations_on_postgresql():
    base = os.environ.get("TEST_POSTGRES_URL")
    if not base:
        pytest.skip("TEST_POSTGRES_URL is not set")
    admin = create_engine(base)
    schemas = [f"sr_mig_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with admin.begin() as conn:
        for sch in schemas:
            conn.execute(text(f'CREATE SCHEMA "{sch}"'))
    sep = "&" if "?" in base else "?"
    urls = [f"{base}{sep}options={quote(f'-csearch_path={sch}')}" for sch in schemas]
    try:
        migrated = _check_migration(urls[0])
        eng, _ = make_store(urls[1])
        assert migrated == _schema(eng)
        eng.dispose()
        downgrade(urls[0])
    finally:
        with admin.begin() as conn:
            for sch in schemas:
                conn.execute(text(f'DROP SCHEMA "{sch}" CASCADE'))
        admin.dispose()



@pytest.mark.postgres
def test_a_held_row_lock_makes_a_postgresql_write_busy_within_its_timeout():
    """A request waits for another transaction's row lock at most its busy timeout (lock_timeout), then is_busy."""
    import time

    from db.engine import is_busy

    base = os.environ.get("TEST_POSTGRES_URL")
    if not base:
        pytest.skip("TEST_POSTGRES_URL is not set")
    schema = f"sr_lock_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(text(f'CREATE TABLE "{schema}".t (id int PRIMARY KEY, v int)'))
        conn.execute(text(f'INSERT INTO "{schema}".t VALUES (1, 0)'))
    eng = make_engine(base, busy_timeout_ms=400)
    factory = make_session_factory(eng)
    try:
        with admin.connect() as holder:
            holder.execute(text(f'SELECT * FROM "{schema}".t WHERE id = 1 FOR UPDATE'))  # held until rollback
            t0 = time.perf_counter()
            with pytest.raises(OperationalError) as err, session_scope(factory) as s:
                s.execute(text(f'UPDATE "{schema}".t SET v = 1 WHERE id = 1'))
            assert is_busy(err.value) and time.perf_counter() - t0 < 5
            holder.rollback()
        with session_scope(factory) as s:  # free again: the write goes through
            s.execute(text(f'UPDATE "{schema}".t SET v = 2 WHERE id = 1'))
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

def test_sqlite_file_settings(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.sqlite'}")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    eng.dispose()


def test_in_memory_sessions_share_one_database_and_scopes_commit_or_roll_back():
    eng, factory = make_store("sqlite://")
    with session_scope(factory) as s:
        s.add(Rater(name="a"))
    with pytest.raises(RuntimeError), session_scope(factory) as s:
        s.add(Rater(name="b"))
        s.flush()
        raise RuntimeError("the caller failed")
    with session_scope(factory) as s:
        assert s.scalars(select(Rater.name)).all() == ["a"]
    eng.dispose()


def _project(**kw):
    values = dict(name="p", model_name="m", scale=4, channels=1, bank_size=4, k_picks=2, raters_per_image=2,
                  ensemble_size=2, steps=2, mode=SampleMode.strict, scheduler="ddim", seed=0)
    values.update(kw)
    return Project(**values)


@pytest.fixture
def factory():
    eng, factory = make_store("sqlite://")
    yield factory
    eng.dispose()


@pytest.mark.parametrize("bad", [dict(k_picks=5), dict(bank_size=0), dict(ensemble_size=9), dict(gold_rate=1.5),
                                 dict(raters_per_image=0), dict(channels=2), dict(lease_s=0)])
def test_check_constraints(factory, bad):
    with pytest.raises(IntegrityError), session_scope(factory) as s:
        s.add(_project(**bad))


def test_enum_foreign_key_unique_and_composite_constraints(factory):
    with pytest.raises(IntegrityError), session_scope(factory) as s:
        s.execute(text("INSERT INTO projects (name, model_name, scale, channels, bank_size, k_picks, "
                       "raters_per_image, ensemble_size, steps, mode, scheduler, seed, gold_rate, "
                       "revision_window_s, lease_s, max_lr_side, created_at) VALUES ('q', 'm', 4, 1, 4, 2, 2, 2, "
                       "2, 'sideways', 'ddim', 0, 0, 0, 1, 8, '2026-01-01')"))
    with pytest.raises(IntegrityError), session_scope(factory) as s:
        s.add(LRImage(project_id=42, content_sha256="x", source="s", png=b"", width=4, height=4, channels=1))
    with pytest.raises(IntegrityError), session_scope(factory) as s:
        s.add(_project())
        s.flush()
        s.add(LRImage(project_id=1, content_sha256="x", source="s", png=b"", width=4, height=4, channels=1,
                      is_gold=True))  # a gold item without a label
    with session_scope(factory) as s:
        p = _project()
        s.add(p)
        s.flush()
        images = [LRImage(project_id=p.id, content_sha256=f"h{i}", source="s", png=b"", width=4, height=4,
                          channels=1) for i in range(2)]
        s.add_all(images)
        s.flush()
        banks = [Bank(image_id=im.id, model_name="m", n=1, seed=0, steps=1, mode=SampleMode.strict,
                      scheduler="ddim", status=BankStatus.complete) for im in images]
        s.add_all(banks)
        s.flush()
        samples = [Sample(bank_id=b.id, index=0, seed=0, png=b"", lr_psnr=100.0) for b in banks]
        s.add_all(samples)
        raters = [Rater(name=f"r{i}") for i in range(2)]
        s.add_all(raters)
        s.flush()
        a = Assignment(project_id=p.id, rater_id=raters[0].id, image_id=images[0].id, bank_id=banks[0].id,
                       slot=1, sample_order=[0], lease_expires_at=utcnow())
        s.add(a)
        s.flush()
        ids = dict(p=p.id, image=images[0].id, bank=banks[0].id, other_sample=samples[1].id, rater=raters[1].id,
                   a=a.id, other_bank=banks[1].id)
    # two raters can never hold the same slot of an image
    with pytest.raises(IntegrityError), session_scope(factory) as s:
        s.add(Assignment(project_id=ids["p"], rater_id=ids["rater"], image_id=ids["image"], bank_id=ids["bank"],
                         slot=1, sample_order=[0], lease_expires_at=utcnow()))
    # a pick of a sample from another bank is impossible, whichever bank id it claims
    for bank in (ids["bank"], ids["other_bank"]):
        with pytest.raises(IntegrityError), session_scope(factory) as s:
            s.add(Pick(assignment_id=ids["a"], bank_id=bank, sample_id=ids["other_sample"], rank=1))
    with pytest.raises(IntegrityError), session_scope(factory) as s:
        s.add(Bank(image_id=ids["image"], model_name="m", n=1, seed=0, steps=1, mode=SampleMode.strict,
                   scheduler="ddim"))  # one bank per image


def test_the_audit_log_is_append_only(factory):
    with session_scope(factory) as s:
        s.add(AuditLog(action="x.created", entity="x", entity_id=1, details={"a": 1}))
    for sql in ("UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log"):
        with pytest.raises((IntegrityError, OperationalError, DBAPIError)), session_scope(factory) as s:
            s.execute(text(sql))
    with session_scope(factory) as s:
        assert s.scalars(select(AuditLog.action)).all() == ["x.created"]


def _imports(folder: str) -> dict[str, set[str]]:
    out = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


def test_layering():
    for path, names in _imports("db").items():
        assert not names & {"annotation", "sr_engine", "gradio", "ui"}, path
    for path, names in _imports("annotation").items():
        assert not names & {"gradio", "ui", "app"}, path
    for path, names in _imports("sr_engine").items():
        assert not names & {"db", "annotation", "gradio"}, path
