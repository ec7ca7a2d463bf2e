"""next_task / submit / revise / skip against in-memory and file SQLite: slots, leases, gold items, shuffled
order, idempotent submissions, revisions in the audit log, and bad input that changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from annotation.accounts import create_rater
from annotation.audit import history
from annotation.errors import Conflict, InvalidInput, LeaseExpired, NotFound, PermissionDenied
from annotation.tasks import next_task, revise, revisable, sample_order, skip, submit
from conftest import make_store, seeded_project, tiny_flow_engine
from db.engine import session_scope
from db.models import Assignment, AssignmentStatus, AuditLog, Pick, Reading, Sample, utcnow


@pytest.fixture(scope="module")
def engine():
    return tiny_flow_engine()


@pytest.fixture(params=["memory", "file"])
def factory(request, tmp_path):
    url = "sqlite://" if request.param == "memory" else f"sqlite:///{tmp_path / 'store.sqlite'}"
    eng, factory = make_store(url)
    yield factory
    eng.dispose()


def _raters(factory, n, prefix="r"):
    with session_scope(factory) as s:
        return [create_rater(s, f"{prefix}{i}").id for i in range(n)]


def _counts(factory):
    with session_scope(factory) as s:
        return {t.__name__: s.scalar(select(func.count()).select_from(t))
                for t in (Assignment, Pick, Reading, AuditLog)}


def test_serve_submit_and_slots(factory, engine):
    pid = seeded_project(factory, engine, n_images=2, raters_per_image=2)
    r = _raters(factory, 5)
    served = {}
    with session_scope(factory) as s:
        for rid in r:
            t = next_task(s, rid, pid)
            served[rid] = t
    got = [t for t in served.values() if t is not None]
    assert len(got) == 4  # 2 images x 2 slots; the fifth rater gets nothing
    assert served[r[4]] is None
    per_image = {}
    for t in got:
        per_image.setdefault(t.image_id, []).append(t)
        assert t.k == 2 and len(t.samples) == 8 and t.lr_png.startswith(b"\x89PNG")
        assert sorted(x.index for x in t.samples) == list(range(8))
    assert sorted(len(v) for v in per_image.values()) == [2, 2]  # fewest submissions first spreads the raters
    # the order shown is the stored per-rater shuffle
    t0 = served[r[0]]
    with session_scope(factory) as s:
        a = s.get(Assignment, t0.assignment_id)
        assert [x.index for x in t0.samples] == a.sample_order == sample_order(0, r[0], t0.image_id, 8)
        again = next_task(s, r[0], pid)  # a live lease is returned again, not a second image
        assert again.assignment_id == t0.assignment_id
    orders = {tuple(x.index for x in t.samples) for t in got}
    assert len(orders) > 1
    picks = [t0.samples[3].sample_id, t0.samples[0].sample_id]
    with session_scope(factory) as s:
        res = submit(s, r[0], t0.assignment_id, picks, "5")
    assert res.status == "submitted" and res.picks == picks and res.reading == "5" and not res.replayed
    assert res.seconds_on_task is not None and res.seconds_on_task >= 0
    with session_scope(factory) as s:
        stored = s.scalars(select(Pick).where(Pick.assignment_id == t0.assignment_id).order_by(Pick.rank)).all()
        assert [(p.sample_id, p.rank) for p in stored] == [(picks[0], 1), (picks[1], 2)]
        assert next_task(s, r[0], pid) is None  # its own image is done, the other one's slots are all held


def test_submit_is_idempotent_and_revise_keeps_history(factory, engine):
    pid = seeded_project(factory, engine, n_images=1, revision_window_s=60)
    (rid,) = _raters(factory, 1)
    with session_scope(factory) as s:
        t = next_task(s, rid, pid)
    picks = [t.samples[0].sample_id, t.samples[1].sample_id]
    with session_scope(factory) as s:
        first = submit(s, rid, t.assignment_id, picks, "8B")
    before = _counts(factory)
    for _ in range(3):  # double clicks and retries
        with session_scope(factory) as s:
            again = submit(s, rid, t.assignment_id, picks, "8B")
        assert again.replayed and again.picks == first.picks and again.submitted_at == first.submitted_at
    assert _counts(factory) == before
    with session_scope(factory) as s, pytest.raises(Conflict):
        submit(s, rid, t.assignment_id, picks[::-1], "8B")  # different picks: that is a revision
    assert _counts(factory) == before
    new = [t.samples[5].sample_id, t.samples[0].sample_id]
    with session_scope(factory) as s:
        assert [x.assignment_id for x in revisable(s, rid, pid)] == [t.assignment_id]
        rev = revise(s, rid, t.assignment_id, new, "BB")
    assert rev.picks == new and rev.reading == "BB" and rev.revisions == 1
    with session_scope(factory) as s:
        entries = history(s, entity="assignment", entity_id=t.assignment_id)
        assert [e.action for e in entries] == ["assignment.served", "assignment.submitted", "assignment.revised"]
        assert entries[-1].details["old_picks"] == picks and entries[-1].details["old_reading"] == "8B"
        assert s.scalar(select(func.count()).select_from(Pick).where(Pick.assignment_id == t.assignment_id)) == 2
    late = utcnow() + timedelta(seconds=120)
    with session_scope(factory) as s, pytest.raises(Conflict):
        revise(s, rid, t.assignment_id, picks, "8B", now=late)


def test_leases_expire_and_free_their_slot(factory, engine):
    pid = seeded_project(factory, engine, n_images=1, raters_per_image=1, lease_s=60)
    a, b = _raters(factory, 2)
    t0 = utcnow()
    with session_scope(factory) as s:
        ta = next_task(s, a, pid, now=t0)
        assert next_task(s, b, pid, now=t0 + timedelta(seconds=30)) is None  # the only slot is held
    with session_scope(factory) as s:
        tb = next_task(s, b, pid, now=t0 + timedelta(seconds=61))  # a's lease ran out
        assert tb is not None and tb.image_id == ta.image_id
        assert s.get(Assignment, ta.assignment_id).status == AssignmentStatus.expired
    picks = [ta.samples[0].sample_id, ta.samples[1].sample_id]
    with session_scope(factory) as s, pytest.raises(LeaseExpired):
        submit(s, a, ta.assignment_id, picks, now=t0 + timedelta(seconds=62))
    with session_scope(factory) as s:
        assert submit(s, b, tb.assignment_id, picks, now=t0 + timedelta(seconds=70)).status == "submitted"


def test_late_submit_succeeds_while_the_slot_is_free(factory, engine):
    pid = seeded_project(factory, engine, n_images=1, raters_per_image=1, lease_s=60)
    (a,) = _raters(factory, 1)
    t0 = utcnow()
    with session_scope(factory) as s:
        t = next_task(s, a, pid, now=t0)
    with session_scope(factory) as s:
        res = submit(s, a, t.assignment_id, [t.samples[0].sample_id, t.samples[1].sample_id],
                     now=t0 + timedelta(minutes=20))
    assert res.status == "submitted" and res.seconds_on_task == pytest.approx(1200)


def test_skip(factory, engine):
    pid = seeded_project(factory, engine, n_images=1, raters_per_image=1)
    a, b = _raters(factory, 2)
    with session_scope(factory) as s:
        t = next_task(s, a, pid)
        assert next_task(s, b, pid) is None
    with session_scope(factory) as s:
        assert skip(s, a, t.assignment_id, "too blurry <b>to</b> read").status == "skipped"
        assert skip(s, a, t.assignment_id, "again").replayed
    with session_scope(factory) as s:
        assert next_task(s, b, pid) is not None  # the slot went to b
        assert next_task(s, a, pid) is None  # a does not get the skipped image back
        assert s.get(Assignment, t.assignment_id).skip_reason == "too blurry <b>to</b> read"
    with session_scope(factory) as s, pytest.raises(Conflict):
        submit(s, a, t.assignment_id, [t.samples[0].sample_id, t.samples[1].sample_id])


def test_gold_items_are_mixed_in_for_every_rater(factory, engine):
    pid = seeded_project(factory, engine, n_images=4, gold=1, raters_per_image=1, gold_rate=0.25)
    raters = _raters(factory, 3)
    with session_scope(factory) as s:
        gold_id = s.scalar(select(Assignment.image_id).limit(1))  # none yet
        assert gold_id is None
    seen = {}
    for rid in raters:
        seen[rid] = []
        while True:
            with session_scope(factory) as s:
                t = next_task(s, rid, pid)
                if t is None:
                    break
                a = s.get(Assignment, t.assignment_id)
                seen[rid].append((t.image_id, a.is_gold))
                submit(s, rid, t.assignment_id, [t.samples[0].sample_id, t.samples[1].sample_id], "g0")
    for rid in raters:  # every rater does the gold item once, uncapped by raters_per_image
        assert sum(g for _, g in seen[rid]) == 1
    regular = [img for rid in raters for img, g in seen[rid] if not g]
    assert sorted(regular) == sorted(set(regular)) and len(regular) == 3  # 3 images x 1 rater each


BAD_PICKS = {
    "too-few": lambda t, other: [t.samples[0].sample_id],
    "too-many": lambda t, other: [x.sample_id for x in t.samples[:3]],
    "repeated": lambda t, other: [t.samples[0].sample_id] * 2,
    "other-bank": lambda t, other: [t.samples[0].sample_id, other],
    "unknown-sample": lambda t, other: [t.samples[0].sample_id, 10**9],
    "not-ints": lambda t, other: ["1", "2"],
    "bools": lambda t, other: [True, False],
    "a-string": lambda t, other: "12",
}


BAD_READINGS = ["", "   ", "x" * 501, "a\x00b", 5, b"5"]


def test_bad_picks_and_readings_change_nothing(factory, engine):
    pid = seeded_project(factory, engine, n_images=2)
    (rid,) = _raters(factory, 1)
    with session_scope(factory) as s:
        t = next_task(s, rid, pid)
        other = s.scalar(select(Sample.id).where(Sample.bank_id != t.bank_id).limit(1))
    before = _counts(factory)
    good = [t.samples[0].sample_id, t.samples[1].sample_id]
    calls = [(case, make(t, other), "5") for case, make in BAD_PICKS.items()]
    calls += [(f"reading {r!r}", good, r) for r in BAD_READINGS]
    for case, picks, reading in calls:
        with session_scope(factory) as s, pytest.raises(InvalidInput):
            submit(s, rid, t.assignment_id, picks, reading)
        assert _counts(factory) == before, case
    with session_scope(factory) as s:
        assert s.get(Assignment, t.assignment_id).status == AssignmentStatus.served


def test_unknown_rater_and_foreign_assignment(factory, engine):
    pid = seeded_project(factory, engine, n_images=1)
    a, b = _raters(factory, 2)
    with session_scope(factory) as s:
        t = next_task(s, a, pid)
    picks = [t.samples[0].sample_id, t.samples[1].sample_id]
    before = _counts(factory)
    for call in (lambda s: next_task(s, 999, pid), lambda s: submit(s, 999, t.assignment_id, picks),
                 lambda s: next_task(s, a, 999), lambda s: submit(s, a, 10**6, picks),
                 lambda s: skip(s, 999, t.assignment_id, "x")):
        with session_scope(factory) as s, pytest.raises(NotFound):
            call(s)
    with session_scope(factory) as s, pytest.raises(PermissionDenied):
        submit(s, b, t.assignment_id, picks)  # another rater's assignment
    with session_scope(factory) as s, pytest.raises(InvalidInput):
        skip(s, a, t.assignment_id, "")
    assert _counts(factory) == before


def test_an_incomplete_bank_is_never_served(factory, engine):
    from annotation.images import import_arrays
    from conftest import tiny_lr_images
    from db.models import Bank, BankStatus

    pid = seeded_project(factory, engine, n_images=1)
    with session_scope(factory) as s:
        (img,) = import_arrays(s, pid, tiny_lr_images(1, seed=77), ["late.png"]).added
        s.add(Bank(image_id=img, model_name="tiny-x4", n=8, seed=1, steps=2, mode="strict", scheduler="ddim",
                   status=BankStatus.running, attempts=1))
    raters = _raters(factory, 4)
    with session_scope(factory) as s:
        served = [next_task(s, r, pid) for r in raters]
    assert any(t is not None for t in served)
    assert all(t is None or t.image_id != img for t in served)


def test_a_lease_that_loses_its_race_leaves_the_transaction_usable(factory, engine):
    """The lease INSERT of a slot (or rater row) that another transaction took first fails alone: serving returns
    None and the transaction goes on and commits what it did before (SQLite needs no savepoint for this: the
    failed statement undoes only itself)."""
    from annotation import tasks

    pid = seeded_project(factory, engine, n_images=1, raters_per_image=2)
    r = _raters(factory, 2)
    with session_scope(factory) as s:
        t = next_task(s, r[0], pid)
        project = tasks._rater_and_project(s, r[1], pid)
        now = utcnow()
        # the slot r[0] holds, as a concurrent transaction would have taken it between the look and the INSERT
        taken = s.scalar(select(Assignment.slot).where(Assignment.id == t.assignment_id))
        orig = tasks._free_slot
        tasks._free_slot = lambda *_a, **_k: taken
        try:
            assert tasks._serve(s, project, r[1], t.image_id, t.bank_id, 8, None, False, now) is None
            # the rater's own row for the image exists already: the INSERT of a second one fails too
            assert tasks._serve(s, project, r[0], t.image_id, t.bank_id, 8, None, True, now) is None
        finally:
            tasks._free_slot = orig
        t1 = next_task(s, r[1], pid)  # the transaction still works: r[1] gets the free slot
        assert t1 is not None and t1.image_id == t.image_id
    with session_scope(factory, write=False) as s:
        rows = s.execute(select(Assignment.rater_id, Assignment.slot).order_by(Assignment.id)).all()
    assert [x.rater_id for x in rows] == r and sorted(x.slot for x in rows) == [1, 2]
