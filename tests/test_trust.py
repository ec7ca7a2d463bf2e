"""Issue 16 in the store: the bank's evidence (read by the domain's reader, stored per sample, shown to analysts,
never to raters), the calibrated consensus per image in the summary export, and adaptive overlap (a resolved image
is never served again; no image gets more than the maximum)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_store, seeded_project, tiny_flow_engine
from sqlalchemy import func, select

from annotation.accounts import create_rater
from annotation.consensus import image_posterior, project_consensus, refresh_resolution
from annotation.exports import summary_frame
from annotation.tasks import next_task, revisable, submit, submitted_task
from annotation.views import image_detail, rater_progress
from db.engine import session_scope
from db.models import Assignment, AssignmentStatus, Bank, LRImage, Project, Sample
from sr_engine.consensus import DIGITS, ConsensusConfig
from sr_engine.evidence import NOT_AVAILABLE, BankEvidence, distribution_text, reader_for


@pytest.fixture(scope="module")
def digit_engine():
    return tiny_flow_engine(name="mnist-tiny-x4", domain="mnist")


@pytest.fixture()
def factory(tmp_path):
    eng, factory = make_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield factory
    eng.dispose()


def _raters(factory, n, role="rater", prefix="r"):
    with session_scope(factory) as s:
        return [create_rater(s, f"{prefix}{i}", role).id for i in range(n)]


def test_distribution_text():
    assert distribution_text({"6": 23, "5": 41}) == "5: 41 of 64, 6: 23 of 64"
    assert distribution_text({}) == NOT_AVAILABLE
    ev = BankEvidence("x", ("5", "6", "5"), np.array([0.9, 0.8, 0.7]))
    assert ev.counts() == {"5": 2, "6": 1} and ev.text() == "5: 2 of 3, 6: 1 of 3"
    assert reader_for("") is None and reader_for("plates").name == "plate-reader"


def test_every_sample_is_read_and_analysts_see_the_distribution(factory, digit_engine):
    pid = seeded_project(factory, digit_engine, n_images=2)
    (analyst,) = _raters(factory, 1, "analyst", "a")
    with session_scope(factory) as s:
        banks = s.scalars(select(Bank).join(LRImage).where(LRImage.project_id == pid)).all()
        assert len(banks) == 2
        for bank in banks:
            samples = s.scalars(select(Sample).where(Sample.bank_id == bank.id)).all()
            assert bank.reader == "digit-classifier" and sum(bank.evidence.values()) == len(samples) == 8
            assert all(x.reading in DIGITS and 0 < x.reading_confidence <= 1 for x in samples)
            assert bank.evidence == dict(sorted({r: sum(x.reading == r for x in samples)
                                                 for r in {x.reading for x in samples}}.items(),
                                                key=lambda kv: (-kv[1], kv[0])))
        d = image_detail(s, analyst, banks[0].image_id)
        assert d.evidence_reader == "digit-classifier" and d.evidence_text == distribution_text(banks[0].evidence)
        assert all(x.reading is not None for x in d.samples)
        assert d.uncertainty is not None and len(d.uncertainty.plus_png) == len(d.uncertainty.explained) <= 3
        df = summary_frame(s, pid)
    assert list(df["evidence_reader"]) == ["digit-classifier"] * 2
    assert [{x["reading"]: x["count"] for x in e} for e in df["evidence"]] == [
        b.evidence for b in sorted(banks, key=lambda b: b.image_id)]


def test_a_model_without_a_reader_has_no_evidence(factory):
    pid = seeded_project(factory, tiny_flow_engine(), n_images=1)
    (analyst,) = _raters(factory, 1, "analyst", "a")
    with session_scope(factory) as s:
        bank = s.scalar(select(Bank).join(LRImage).where(LRImage.project_id == pid))
        assert bank.reader is None and bank.evidence is None
        assert image_detail(s, analyst, bank.image_id).evidence_text == NOT_AVAILABLE
        assert summary_frame(s, pid)["evidence_text"].tolist() == [NOT_AVAILABLE]


def _leaks(obj, secrets: set[str]) -> list[str]:
    """Field names (recursively through dataclasses and lists) whose name or text value names evidence."""
    out = []
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if any(w in f.name for w in ("reading_conf", "evidence", "posterior", "probability", "resolved")):
                out.append(f.name)
            out += _leaks(getattr(obj, f.name), secrets)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            out += _leaks(x, secrets)
    elif isinstance(obj, str) and obj in secrets:
        out.append(obj)
    return out


def test_a_raters_calls_never_return_evidence_posteriors_or_other_votes(factory, digit_engine):
    pid = seeded_project(factory, digit_engine, n_images=2)
    r1, r2 = _raters(factory, 2)
    with session_scope(factory) as s:
        t1 = next_task(s, r1, pid)
        submit(s, r1, t1.assignment_id, [x.sample_id for x in t1.samples[:2]], "7")
        t2 = next_task(s, r2, pid)
        bank = s.get(Bank, t2.bank_id)
        secrets = {distribution_text(bank.evidence), "7"}
        calls = [t2, submit(s, r2, t2.assignment_id, [x.sample_id for x in t2.samples[:2]], "1"),
                 revisable(s, r2, pid), submitted_task(s, r2, t2.assignment_id), rater_progress(s, r2, pid)]
        if t1.image_id == t2.image_id:
            secrets.discard("1")
    assert _leaks(calls, secrets) == []
    assert {f.name for f in dataclasses.fields(calls[0].samples[0])} == {"sample_id", "index", "png"}


def test_the_calibrated_consensus_per_image(factory, digit_engine):
    pid = seeded_project(factory, digit_engine, n_images=3, raters_per_image=4)
    raters = _raters(factory, 4)
    with session_scope(factory) as s:
        top = {b.image_id: next(iter(b.evidence)) for b in s.scalars(select(Bank).join(LRImage).where(
            LRImage.project_id == pid))}  # the reading most samples show; three raters type it, one dissents
        for rid in raters:
            for _ in range(3):
                t = next_task(s, rid, pid)
                other = str((int(top[t.image_id]) + 1) % 10)
                submit(s, rid, t.assignment_id, [x.sample_id for x in t.samples[:2]],
                       top[t.image_id] if rid != raters[3] else other)
        pc = project_consensus(s, pid)
        df = summary_frame(s, pid)
    assert pc.kind == "digits" and len(pc.images) == 3
    for iid, img in pc.images.items():
        assert img.reading == top[iid] and img.n_votes == 4 and 0.5 < img.probability <= 1
        assert img.resolved == (img.probability >= pc.threshold)
        assert abs(sum(img.posterior.values()) - 1) < 0.01
    assert list(df["consensus_reading"]) == [top[i] for i in sorted(top)] == list(df["majority_reading"])
    assert df["consensus_probability"].between(0, 1).all() and df["resolved"].dtype == "boolean"


def test_image_posterior_matches_the_fit_for_fixed_parameters():
    """The per-image update is the EM's E-step with the fit's parameters: same posterior as the full fit."""
    from sr_engine.consensus import Rating, fit_consensus

    cfg = ConsensusConfig(beta=0.7, follow="fixed", follow_rate=0.2, unknown="other", temperature=1.3)
    ratings = [Rating(i, r, str((i + (r == "c")) % 10)) for i in range(12) for r in "abc"]
    evidence = {i: {str(i % 10): 5, str((i + 3) % 10): 3} for i in range(12)}
    res = fit_consensus(ratings, DIGITS, evidence=evidence, config=cfg)
    state = {"labels": list(res.labels), "class_prior": res.class_prior.tolist(), "follow_rate": res.follow_rate,
             "config": cfg.to_dict(), "confusion": {r.rater: r.confusion.tolist() for r in res.raters}}
    for i in (0, 5, 11):
        _, post = image_posterior(state, {r.rater: r.reading for r in ratings if r.image == i}, evidence[i])
        np.testing.assert_allclose(post, res.image(i).posterior, atol=1e-6)


def test_refresh_writes_resolution(factory, digit_engine):
    pid = seeded_project(factory, digit_engine, n_images=2)
    with session_scope(factory) as s:
        pc = refresh_resolution(s, pid)
        rows = s.execute(select(LRImage.id, LRImage.consensus_reading, LRImage.consensus_probability,
                                LRImage.resolved).where(LRImage.project_id == pid)).all()
    for iid, reading, prob, res in rows:
        assert (reading, prob, res) == (pc.images[iid].reading, pc.images[iid].probability, pc.images[iid].resolved)


# ---- adaptive overlap -------------------------------------------------------------------------------------------
def _state(factory, pid):
    with session_scope(factory) as s:
        rows = s.execute(select(LRImage.id, LRImage.resolved).where(LRImage.project_id == pid)).all()
        subs = dict(s.execute(select(Assignment.image_id, func.count(Assignment.id)).where(
            Assignment.project_id == pid, Assignment.status == AssignmentStatus.submitted)
            .group_by(Assignment.image_id)).all())
    return {i: (bool(r), int(subs.get(i, 0))) for i, r in rows}


def test_a_resolved_image_is_never_served_again_and_none_exceeds_the_maximum(factory, digit_engine):
    pid = seeded_project(factory, digit_engine, n_images=4, raters_per_image=4, min_raters=2,
                         resolve_threshold=0.6)
    raters = _raters(factory, 12)
    with session_scope(factory) as s:
        top = {b.image_id: next(iter(b.evidence)) for b in s.scalars(select(Bank).join(LRImage).where(
            LRImage.project_id == pid))}
    agree = set(list(top)[:2])  # raters agree (with the bank) on two images and split on the others
    rng = np.random.default_rng(0)
    for rid in raters:
        while True:
            before = _state(factory, pid)
            with session_scope(factory) as s:
                t = next_task(s, rid, pid)
                if t is None:
                    break
                resolved, n_sub = before[t.image_id]
                assert not (resolved and n_sub >= 2), "a resolved image with the minimum was served"
                reading = top[t.image_id] if t.image_id in agree else str(rng.integers(10))
                submit(s, rid, t.assignment_id, [x.sample_id for x in t.samples[:2]], reading)
    final = _state(factory, pid)
    assert all(n <= 4 for _, n in final.values())  # the maximum
    assert all(n >= 2 for _, n in final.values())  # the minimum, resolved or not
    assert any(r and n < 4 for r, n in final.values())  # some images stopped early: the rule was exercised
    assert all(n == 4 for r, n in final.values() if not r)  # the unresolved got the maximum


def test_unresolved_images_are_served_first(factory, digit_engine):
    pid = seeded_project(factory, digit_engine, n_images=2, raters_per_image=3, min_raters=1)
    (r1, r2) = _raters(factory, 2)
    with session_scope(factory) as s:
        first, second = s.scalars(select(LRImage).where(LRImage.project_id == pid).order_by(LRImage.id)).all()
        first.resolved = True  # as if its consensus were resolved (not at the minimum: still servable)
        second_id = second.id
        s.flush()
        for rid in (r1, r2):
            assert next_task(s, rid, pid).image_id == second_id


def test_project_settings_refuse_bad_overlap(factory, digit_engine):
    from annotation.errors import InvalidInput
    from annotation.projects import create_project, settings_for_engine

    with session_scope(factory) as s:
        for bad in ({"min_raters": 0}, {"min_raters": 6, "raters_per_image": 5}, {"resolve_threshold": 0.0},
                    {"resolve_threshold": 1.5}, {"resolve_threshold": True}):
            with pytest.raises(InvalidInput):
                create_project(s, settings_for_engine(digit_engine, "bad", **bad))
        p = create_project(s, settings_for_engine(digit_engine, "ok", min_raters=3, raters_per_image=7,
                                                  resolve_threshold=0.9))
        assert (p.min_raters, p.raters_per_image, p.resolve_threshold) == (3, 7, 0.9)


# ---- refits off the request path (the app's BackgroundRefit) -------------------------------------------------------
def _vote_all(factory, pid, raters, hook=None, reading="5"):
    """Every rater rates every image they are served; ``hook`` goes into each write session's DEFER_REFIT."""
    from annotation.consensus import DEFER_REFIT

    for rid in raters:
        while True:
            with session_scope(factory) as s:
                if hook is not None:
                    s.info[DEFER_REFIT] = hook
                t = next_task(s, rid, pid)
                if t is None:
                    break
                submit(s, rid, t.assignment_id, [x.sample_id for x in t.samples[:2]], reading)


def _flags(factory, pid):
    with session_scope(factory, write=False) as s:
        return {i: (r, p, bool(ok)) for i, r, p, ok in s.execute(select(
            LRImage.id, LRImage.consensus_reading, LRImage.consensus_probability, LRImage.resolved).where(
            LRImage.project_id == pid))}


def test_a_deferred_refit_is_asked_for_instead_of_run_and_the_background_one_matches_the_full_fit(
        factory, digit_engine):
    from annotation.consensus import BackgroundRefit

    pid = seeded_project(factory, digit_engine, n_images=4, raters_per_image=4)
    raters = _raters(factory, 4)
    asked: list[int] = []
    _vote_all(factory, pid, raters, hook=asked.append)
    assert asked and set(asked) == {pid}  # the first submission finds no state: a refit is asked for, not run
    with session_scope(factory, write=False) as s:
        assert s.get(Project, pid).consensus_state is None
    refit = BackgroundRefit(factory)
    try:
        refit.schedule(pid)
        refit.schedule(pid)  # coalesced with the first while it is pending or running
        assert refit.idle(60) and 1 <= refit.refits <= 2
    finally:
        refit.close()
    got = _flags(factory, pid)
    with session_scope(factory) as s:
        pc = refresh_resolution(s, pid)  # the in-transaction full fit writes the same flags
    want = {i: (c.reading, c.probability, c.resolved) for i, c in pc.images.items()}
    assert got.keys() == want.keys()
    for i in got:
        assert got[i][0] == want[i][0] and got[i][2] == want[i][2]
        assert got[i][1] == pytest.approx(want[i][1], abs=1e-9)


def test_background_refits_of_a_project_keep_their_interval_unless_asked_now(factory, digit_engine):
    """Under a stream of submissions a project is refitted at most every ``min_interval_s``; an analyst's request
    (``now=True``) does not wait."""
    import time

    from annotation.consensus import BackgroundRefit

    pid = seeded_project(factory, digit_engine, n_images=2, raters_per_image=2)
    _vote_all(factory, pid, _raters(factory, 2))
    refit = BackgroundRefit(factory, min_interval_s=1.5)
    try:
        refit.schedule(pid)  # the first refit of a project runs at once
        assert refit.idle(60) and refit.refits == 1
        t0 = time.monotonic()
        refit.schedule(pid)
        time.sleep(0.3)
        assert refit.refits == 1  # still inside the interval: waiting
        assert refit.idle(60) and refit.refits == 2
        assert time.monotonic() - t0 >= 1.2  # 1.5 s after the first ended (minus its own run time at most)
        t1 = time.monotonic()
        refit.schedule(pid, now=True)
        assert refit.idle(60) and refit.refits == 3
        assert time.monotonic() - t1 < 1.2  # did not wait out the interval
    finally:
        refit.close()


def test_a_due_refit_waits_while_requests_write_but_not_longer_than_its_limit(tmp_path, digit_engine):
    """With ``yield_s``, a refit waits while a write scope holds the store's write lock (a burst of submissions),
    and runs once the lock is free, or after ``yield_s`` at the latest."""
    import threading
    import time

    from annotation.consensus import BackgroundRefit

    _, factory = make_store(f"sqlite:///{tmp_path / 'y.sqlite'}")
    pid = seeded_project(factory, digit_engine, n_images=2, raters_per_image=2)
    _vote_all(factory, pid, _raters(factory, 2))
    release = threading.Event()
    held = threading.Event()

    def writer():
        with session_scope(factory):
            held.set()
            release.wait(30)

    refit = BackgroundRefit(factory, yield_s=20.0)
    t = threading.Thread(target=writer)
    try:
        t.start()
        assert held.wait(30)
        refit.schedule(pid)
        time.sleep(0.5)
        assert not refit.running and refit.refits == 0  # a request holds the write lock: the refit waits
        release.set()
        assert refit.idle(60) and refit.refits == 1  # the lock is free: it ran
        release.clear()
        held.clear()
        t = threading.Thread(target=writer)
        t.start()
        assert held.wait(30)
        refit.yield_s = 0.3
        refit.schedule(pid)
        time.sleep(1.0)
        assert refit.running and refit.refits == 1  # past its limit it started, and waits for the lock as any writer
        release.set()
        assert refit.idle(60) and refit.refits == 2
    finally:
        release.set()
        t.join(30)
        refit.close()


def test_a_due_refit_waits_out_the_gaps_of_a_burst(tmp_path, digit_engine):
    """With ``quiet_s``, a refit does not start in the moment between two requests' write scopes: it waits until
    the write lock has been free for ``quiet_s``."""
    import time

    from annotation.consensus import BackgroundRefit
    from db.engine import writers_active

    _, factory = make_store(f"sqlite:///{tmp_path / 'q.sqlite'}")
    pid = seeded_project(factory, digit_engine, n_images=2, raters_per_image=2)
    _vote_all(factory, pid, _raters(factory, 2))
    refit = BackgroundRefit(factory, yield_s=30.0, quiet_s=0.4)
    try:
        with session_scope(factory):
            pass
        assert writers_active(factory, 0.4) and not writers_active(factory)  # just released: not quiet yet
        refit.schedule(pid)
        ends = time.monotonic() + 1.5
        while time.monotonic() < ends:  # a burst: a short write every 0.1 s, the lock free in between
            with session_scope(factory):
                pass
            assert not refit.running and refit.refits == 0
            time.sleep(0.1)
        t = time.monotonic()
        assert refit.idle(60) and refit.refits == 1  # the burst is over: it ran, after the quiet time
        assert time.monotonic() - t >= 0.3
    finally:
        refit.close()


def test_with_a_state_a_deferred_submit_still_updates_its_image(factory, digit_engine):
    """Once a fit exists, a submission updates its own image from it in the same transaction (the resolved flag
    serving reads)."""
    from annotation.consensus import DEFER_REFIT

    pid = seeded_project(factory, digit_engine, n_images=2, raters_per_image=3)
    raters = _raters(factory, 3)
    with session_scope(factory) as s:
        refresh_resolution(s, pid)  # a state (no votes yet)
    asked: list[int] = []
    with session_scope(factory) as s:
        s.info[DEFER_REFIT] = asked.append
        t = next_task(s, raters[0], pid)
        submit(s, raters[0], t.assignment_id, [x.sample_id for x in t.samples[:2]], "7")
        image_id = t.image_id
    flags = _flags(factory, pid)
    assert flags[image_id][0] is not None and flags[image_id][1] is not None
    assert asked == []  # one submission since the fit: not stale (a refit is due after max(10, 25%) more)
