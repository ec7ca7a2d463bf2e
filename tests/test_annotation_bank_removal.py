"""Removing a bank on its own (the image stays): nothing rated is lost, a worker's bank is left alone, only an admin
may do it, the audit log keeps the record, and the next run makes the bank again (the same seed: the same samples).
Real tiny engine, SQLite files, seeded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from annotation.__main__ import main
from annotation.accounts import create_rater
from annotation.audit import history
from annotation.banks import claim_next, progress, remove_bank, run_bank_jobs
from annotation.errors import Conflict, NotFound, PermissionDenied
from annotation.images import import_arrays
from annotation.projects import create_project, settings_for_engine
from annotation.tasks import next_task, skip, submit
from conftest import make_store, tiny_flow_engine, tiny_lr_images
from db.engine import session_scope
from db.models import Assignment, Bank, LRImage, Pick, Sample, utcnow


@pytest.fixture(scope="module")
def engine():
    return tiny_flow_engine(lr_shape=(4, 4))


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'removal.sqlite'}"
    eng, factory = make_store(url)
    yield url, factory
    eng.dispose()


def _project(factory, engine, name: str, n_images: int = 2) -> tuple[int, list[int]]:
    with session_scope(factory) as s:
        pid = create_project(s, settings_for_engine(engine, name, bank_size=4, k_picks=2, raters_per_image=2,
                                                    ensemble_size=2, steps=2)).id
        ids = import_arrays(s, pid, tiny_lr_images(n_images, seed=11), [f"{name}-{i}.png" for i in range(n_images)]
                            ).added
    assert not run_bank_jobs(factory, engine, pid).failed
    return pid, ids


def _bank(s, image_id: int) -> tuple[int, list[tuple[int, bytes]]] | None:
    bank = s.scalar(select(Bank).where(Bank.image_id == image_id))
    if bank is None:
        return None
    return int(bank.seed), [(sm.seed, sm.png) for sm in bank.samples]


def test_a_bank_without_votes_is_removed_audited_and_made_again(store, engine):
    _, factory = store
    pid, (first, second) = _project(factory, engine, "again")
    with session_scope(factory) as s:
        admin = create_rater(s, "boss", "admin", "pw").id
        rid = create_rater(s, "r", "rater", "pw").id
        before = _bank(s, first)
        t = next_task(s, rid, pid)  # an open lease (nothing submitted) on the first image's bank
        assert t.image_id == first
    with session_scope(factory) as s:
        r = remove_bank(s, pid, first, actor_id=admin, reason="checkpoint re-exported")
        assert (r.image_id, r.source, r.status, r.samples, r.open_assignments) == (first, "again-0.png", "complete",
                                                                                  4, 1)
    with session_scope(factory) as s:
        assert s.get(LRImage, first) is not None and _bank(s, first) is None  # the image stays
        assert s.scalar(select(func.count()).select_from(Sample).where(Sample.bank_id == r.bank_id)) == 0
        assert s.scalar(select(func.count()).select_from(Assignment).where(Assignment.image_id == first)) == 0
        assert _bank(s, second) is not None  # the other image's bank is untouched
        b = progress(s, pid)
        assert (b.images, b.complete) == (2, 1)
        (entry,) = history(s, action="bank.removed")
        assert entry.actor_id == admin and entry.entity_id == r.bank_id and entry.project_id == pid
        assert {k: entry.details[k] for k in ("image_id", "source", "samples", "open_assignments", "reason")} == {
            "image_id": first, "source": "again-0.png", "samples": 4, "open_assignments": 1,
            "reason": "checkpoint re-exported"}
        assert entry.details["seed"] == before[0]
    rep = run_bank_jobs(factory, engine, pid)  # queued again by the next run
    assert len(rep.completed) == 1 and not rep.failed
    with session_scope(factory) as s:
        assert _bank(s, first) == before  # the same seed and checkpoint: the same samples
        assert next_task(s, rid, pid) is not None


@pytest.mark.parametrize("rated", ["submitted", "skipped"])
def test_a_bank_that_votes_or_skips_depend_on_is_refused_and_kept(store, engine, rated):
    _, factory = store
    pid, (first, _) = _project(factory, engine, f"kept-{rated}")
    with session_scope(factory) as s:
        rid = create_rater(s, "r", "rater", "pw").id
        t = next_task(s, rid, pid)
        if rated == "submitted":
            submit(s, rid, t.assignment_id, [t.samples[0].sample_id, t.samples[1].sample_id], "7")
        else:
            skip(s, rid, t.assignment_id, "too blurry")
        image = t.image_id
        before = _bank(s, image)
    with session_scope(factory) as s, pytest.raises(Conflict, match="1 submitted or skipped task.*Remove image"):
        remove_bank(s, pid, image)
    with session_scope(factory) as s:
        assert _bank(s, image) == before and not history(s, action="bank.removed")
        picks = s.scalar(select(func.count()).select_from(Pick))
        assert picks == (2 if rated == "submitted" else 0)


def test_a_bank_a_worker_generates_is_refused_until_its_heartbeat_is_stale(store, engine):
    _, factory = store
    with session_scope(factory) as s:
        pid = create_project(s, settings_for_engine(engine, "busy", bank_size=4, k_picks=2, raters_per_image=1,
                                                    ensemble_size=2, steps=2)).id
        (iid,) = import_arrays(s, pid, tiny_lr_images(1, seed=5), ["busy.png"]).added
    from annotation.banks import enqueue_missing

    with session_scope(factory) as s:
        enqueue_missing(s, pid)
        claim = claim_next(s, [pid], worker="gpu-box:1")
        assert claim is not None
    with session_scope(factory) as s, pytest.raises(Conflict, match="being generated by gpu-box:1"):
        remove_bank(s, pid, iid)
    with session_scope(factory) as s:  # the worker died: 61 s without a heartbeat
        r = remove_bank(s, pid, iid, now=utcnow() + timedelta(seconds=61))
        assert r.status == "running" and r.samples == 0


def test_only_an_admin_removes_a_bank_of_an_image_of_that_project(store, engine):
    _, factory = store
    pid, (first, _) = _project(factory, engine, "mine")
    other, (foreign, _) = _project(factory, engine, "theirs")
    with session_scope(factory) as s:
        rid = create_rater(s, "r", "rater", "pw").id
        ana = create_rater(s, "ana", "analyst", "pw").id
    for actor in (rid, ana):
        with session_scope(factory) as s, pytest.raises(PermissionDenied, match="may not do this"):
            remove_bank(s, pid, first, actor_id=actor)
    with session_scope(factory) as s, pytest.raises(NotFound, match="is not in project"):
        remove_bank(s, pid, foreign)
    with session_scope(factory) as s:
        remove_bank(s, pid, first)
    with session_scope(factory) as s, pytest.raises(NotFound, match="has no bank"):
        remove_bank(s, pid, first)
    with session_scope(factory) as s:
        assert len(history(s, action="bank.removed")) == 1 and progress(s, other).complete == 2


def test_the_command_line_removes_a_bank(store, engine, capsys):
    url, factory = store
    pid, (first, _) = _project(factory, engine, "cli")
    assert main(["remove-bank", "--db-url", url, "--project", "cli", "--image", str(first), "--reason", "why"]) == 0
    out = capsys.readouterr().out
    assert f"of image {first} (cli-0.png) with 4 sample(s)" in out and "generate" in out, out
    assert main(["remove-bank", "--db-url", url, "--project", "cli", "--image", str(first)]) == 2  # one line
    assert "has no bank" in capsys.readouterr().err
    with session_scope(factory) as s:
        (entry,) = history(s, action="bank.removed")
        assert entry.actor_id is None and entry.details["reason"] == "why"
