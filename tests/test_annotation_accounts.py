"""Accounts: roles, hashed secrets, the first admin, names stored verbatim, permissions; projects' validation."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from annotation.accounts import authenticate, create_rater, ensure_admin, hash_secret, set_secret, verify_secret
from annotation.audit import history
from annotation.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from annotation.exclusions import exclude_rater, excluded_rater_ids, include_rater
from annotation.projects import ProjectSettings, create_project, get_project
from conftest import make_store
from db.engine import session_scope
from db.models import AuditLog, Project, Rater


@pytest.fixture
def factory():
    eng, factory = make_store("sqlite://")
    yield factory
    eng.dispose()


def test_secrets_are_hashed_with_salt():
    h1, h2 = hash_secret("hunter2"), hash_secret("hunter2")
    assert h1 != h2 and h1.startswith("scrypt$") and "hunter2" not in h1
    assert verify_secret("hunter2", h1) and verify_secret("hunter2", h2)
    assert not verify_secret("hunter3", h1) and not verify_secret("hunter2", None)
    assert not verify_secret("hunter2", "md5$abc") and not verify_secret("x", "garbage")


def test_accounts_and_the_first_admin(factory):
    with session_scope(factory) as s:
        admin = ensure_admin(s)
        assert admin.generated and len(admin.password) >= 12
        assert ensure_admin(s) is None  # only on first start
        name = "Zoë \"<b>'; DROP TABLE raters;--"
        r = create_rater(s, name, "rater", "s3cret", actor_id=admin.id)
        assert r.name == name and r.role == "rater"
        a = create_rater(s, "ana", "analyst", "pw")
    with session_scope(factory) as s:
        assert authenticate(s, "admin", admin.password).role == "admin"
        assert authenticate(s, name, "s3cret").id == r.id
        assert authenticate(s, name, "wrong") is None and authenticate(s, "nobody", "s3cret") is None
        assert s.get(Rater, r.id).name == name
        set_secret(s, r.id, "new", actor_id=r.id)
    with session_scope(factory) as s:
        assert authenticate(s, name, "new") is not None and authenticate(s, name, "s3cret") is None
        with pytest.raises(PermissionDenied):
            create_rater(s, "x", actor_id=a.id)  # only admins create accounts
        with pytest.raises(PermissionDenied):
            set_secret(s, admin.id, "pwned", actor_id=r.id)
        assert [e.action for e in history(s, entity="rater", entity_id=r.id)] == ["rater.created",
                                                                                "rater.secret_changed"]


@pytest.mark.parametrize("name,role", [("", "rater"), ("   ", "rater"), ("a\nb", "rater"), ("x" * 101, "rater"),
                                       (None, "rater"), ("ok", "superuser"), ("ok", "Rater")])
def test_bad_accounts_change_nothing(factory, name, role):
    with session_scope(factory) as s:
        before = s.scalar(select(func.count()).select_from(AuditLog))
        with pytest.raises(InvalidInput):
            create_rater(s, name, role)
        assert s.scalar(select(func.count()).select_from(Rater)) == 0
        assert s.scalar(select(func.count()).select_from(AuditLog)) == before


def test_duplicate_names_and_unknown_raters(factory):
    with session_scope(factory) as s:
        create_rater(s, "same")
    with session_scope(factory) as s, pytest.raises(Conflict):
        create_rater(s, "same")
    with session_scope(factory) as s:
        with pytest.raises(NotFound):
            exclude_rater(s, 999, 1, 1, "x")


def test_exclusions(factory):
    with session_scope(factory) as s:
        pid = create_project(s, ProjectSettings(name="p", model_name="m", scale=4, bank_size=4, k_picks=2,
                                                ensemble_size=2)).id
        r = create_rater(s, "r").id
        ana = create_rater(s, "ana", "analyst").id
        with pytest.raises(PermissionDenied):
            exclude_rater(s, r, pid, r, "self")
        exclude_rater(s, ana, pid, r, "failed gold items")
        exclude_rater(s, ana, pid, r, "again")  # idempotent
        assert excluded_rater_ids(s, pid) == {r}
        include_rater(s, ana, pid, r)
        assert excluded_rater_ids(s, pid) == set()
        assert [e.action for e in history(s, entity="rater", entity_id=r)][-2:] == ["rater.excluded",
                                                                                   "rater.included"]


@pytest.mark.parametrize("bad", [dict(k_picks=0), dict(k_picks=9), dict(ensemble_size=9), dict(scale=1),
                                 dict(mode="sideways"), dict(scheduler="pndm"), dict(gold_rate=2.0),
                                 dict(channels=2), dict(name=""), dict(bank_size=True), dict(lease_s=0),
                                 dict(seed=-1), dict(engine_options={"prompt": ""}),
                                 dict(engine_options={"prompt": "x" * 1001}), dict(engine_options={"n": [1]}),
                                 dict(engine_options={"n": float("nan")}), dict(engine_options="prompt")])
def test_bad_project_settings(factory, bad):
    values = dict(name="p", model_name="m", scale=4, bank_size=8, k_picks=2, ensemble_size=2)
    values.update(bad)
    with session_scope(factory) as s:
        with pytest.raises(InvalidInput):
            create_project(s, ProjectSettings(**values))
        assert s.scalar(select(func.count()).select_from(Project)) == 0


def test_projects_by_id_and_name(factory):
    with session_scope(factory) as s:
        p = create_project(s, ProjectSettings(name="<p> 'q'", model_name="m", scale=4, bank_size=8, k_picks=2,
                                              ensemble_size=2))
        assert get_project(s, p.id) is p and get_project(s, "<p> 'q'") is p
        with pytest.raises(NotFound):
            get_project(s, "nope")
        with pytest.raises(Conflict):
            create_project(s, ProjectSettings(name="<p> 'q'", model_name="m", scale=4, bank_size=8, k_picks=2,
                                              ensemble_size=2))
