"""Serving and collecting tasks: ``next_task``, ``submit``, ``revise``, ``skip``.

An assignment (rater x image) is a lease: while ``served`` and unexpired it holds one of the image's
``raters_per_image`` slots (``uq_assignments_image_slot`` in the database: two raters can never hold the same
slot, so an image never gets more than M holders, even when two raters ask for the last slot at once). An expired
lease frees its slot; a late submission still succeeds if the slot was not taken meanwhile (or another is free).
Gold items (known label) are served to every rater once, uncapped, at the project's ``gold_rate``.

The assignment id is the idempotency key: submitting the same picks again (a double click, a retried request)
returns the stored submission unchanged; different picks for a submitted assignment are refused: changing a vote
is :func:`revise`, within the project's ``revision_window_s``, and the audit log keeps the old picks.

Times (``now``) are naive UTC datetimes, like every timestamp in the store (``db.models.utcnow``).

Samples are shown in a per-rater shuffled order (seeded from the project seed, rater and image), stored with the
assignment. A task carries no one else's votes, and nothing of the bank's evidence or the consensus.

Adaptive overlap: ``raters_per_image`` is the maximum; an image with at least ``min_raters``
submissions whose calibrated consensus is resolved (``lr_images.resolved``, updated in every submit's transaction
by :func:`annotation.consensus.update_image`) is no longer served, and unresolved images are served first. The
slots and leases above are unchanged, so no image gets more than the maximum.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

import numpy as np
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from db.models import (Assignment, AssignmentStatus, Bank, BankStatus, LRImage, Pick, Project, Rater, Reading,
                       Sample, utcnow)
from db.prepared import Prepared, insert_values

from .accounts import check_text, get_rater
from .audit import append, record
from .consensus import update_image, update_image_of
from .errors import Conflict, InvalidInput, LeaseExpired, NotFound, PermissionDenied
from .projects import MAX_READING, get_project, normalize_reading

MAX_REASON = 500
SUBMITTED, SERVED, SKIPPED, EXPIRED = (AssignmentStatus.submitted, AssignmentStatus.served,
                                       AssignmentStatus.skipped, AssignmentStatus.expired)


@dataclass(frozen=True)
class TaskSample:
    sample_id: int
    index: int  # the sample's index in its bank
    png: bytes


@dataclass
class Task:
    """One image to rate: its LR PNG and the bank's samples in this rater's order. Pick ``k`` sample ids."""

    assignment_id: int
    project_id: int
    image_id: int
    bank_id: int
    k: int
    lr_png: bytes
    samples: list[TaskSample]
    served_at: datetime
    lease_expires_at: datetime


@dataclass
class SubmitResult:
    assignment_id: int
    status: str
    picks: list[int]  # sample ids, rank 1 first
    reading: str | None
    submitted_at: datetime | None
    seconds_on_task: float | None
    replayed: bool = False  # True: the same submission was already stored; nothing changed
    revisions: int = 0


# ---- helpers -------------------------------------------------------------------------------------------------
def min_raters(project: Project) -> int:
    """Submissions an image gets before a resolved consensus stops its serving (NULL: the maximum, fixed overlap)."""
    return int(project.min_raters) if project.min_raters is not None else int(project.raters_per_image)


def _active_rater(session: Session, rater_id: int):
    rater = get_rater(session, rater_id)
    if not rater.active:
        raise PermissionDenied(f"rater {rater.name!r} is deactivated")
    return rater


def _is_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _sync(session: Session, cls: type, pk: int, **values) -> None:
    """Bring a loaded ORM object (if the session holds one) up to date with a Core UPDATE's values."""
    if session.identity_map:
        obj = session.identity_map.get(identity_key(cls, pk))
        if obj is not None:
            for key, value in values.items():
                set_committed_value(obj, key, value)


# The hot path (a submission, the next task, the progress count) runs these prebuilt Core statements on the driver's
# connection (db.prepared): building and compiling an ORM statement per call costs more than running it, full ORM
# rows (PNG columns, flushes) are not needed, and SQLAlchemy's per-execution work holds the interpreter lock that a
# burst of raters queues for. Writes that the session may hold objects for are mirrored into them (_sync).
_A, _R, _P = Assignment.__table__, Rater.__table__, Project.__table__
_I, _B, _S = LRImage.__table__, Bank.__table__, Sample.__table__
_PICK, _READING = Pick.__table__, Reading.__table__
_SETTINGS = (_P.c.id, _P.c.k_picks, _P.c.raters_per_image, _P.c.min_raters, _P.c.resolve_threshold, _P.c.lease_s,
             _P.c.seed, _P.c.gold_rate, _P.c.model_name, _P.c.revision_window_s)
_RATER_PROJECT = Prepared(select(_R.c.active, _R.c.name, *_SETTINGS)
                          .select_from(_R.join(_P, _P.c.id == bindparam("project_id")))
                          .where(_R.c.id == bindparam("rater_id")))
_TASK_COLUMNS = (_A.c.id, _A.c.rater_id, _A.c.project_id, _A.c.image_id, _A.c.bank_id, _A.c.sample_order,
                 _A.c.served_at, _A.c.lease_expires_at)
# the rater's own live leases and every expired one still holding its slot (one look at the project's leases)
_LEASES = Prepared(select(*_TASK_COLUMNS).where(
    _A.c.project_id == bindparam("project_id"), _A.c.status == SERVED,
    or_(_A.c.rater_id == bindparam("rater_id"), _A.c.lease_expires_at <= bindparam("now"))).order_by(_A.c.id))
_EXPIRE = Prepared(update(_A).where(_A.c.id == bindparam("aid"), _A.c.status == SERVED)
                   .values(status=EXPIRED, slot=None))
_GOLD_COUNTS = Prepared(select(func.count(_A.c.id), func.count(_A.c.id).filter(_A.c.is_gold.is_(True))).where(
    _A.c.rater_id == bindparam("rater_id"), _A.c.project_id == bindparam("project_id"), _A.c.status != EXPIRED))
_HELD_SLOTS = Prepared(select(_A.c.slot).where(_A.c.image_id == bindparam("image_id"), _A.c.slot.is_not(None)))
_TASK_IMAGES = Prepared(select(_I.c.png.label("lr_png"), _S.c.id, _S.c.index.label("sample_index"), _S.c.png)
                        .select_from(_I.outerjoin(_S, _S.c.bank_id == bindparam("bank_id")))
                        .where(_I.c.id == bindparam("image_id")))
_BANK_SAMPLES = Prepared(select(_S.c.id).where(_S.c.bank_id == bindparam("bank_id")))
_OWNED = Prepared(select(_A.c.id, _A.c.rater_id, _A.c.project_id, _A.c.image_id, _A.c.bank_id, _A.c.status,
                         _A.c.is_gold, _A.c.served_at, _A.c.revisions, _R.c.active, _R.c.name, *_SETTINGS[1:])
                  .select_from(_A.join(_R, _R.c.id == bindparam("rater_id")).join(_P, _P.c.id == _A.c.project_id))
                  .where(_A.c.id == bindparam("aid")).with_for_update(of=_A))
_NEW_LEASE = Prepared(insert_values(
    _A, "project_id", "rater_id", "image_id", "bank_id", "is_gold", "sample_order", "status", "slot", "served_at",
    "lease_expires_at", "revisions").returning(_A.c.id))
_SUBMITTED = Prepared(update(_A).where(_A.c.id == bindparam("aid"))
                      .values(status=SUBMITTED, submitted_at=bindparam("at"), seconds_on_task=bindparam("seconds")))
_NEW_PICK = Prepared(insert_values(_PICK, "assignment_id", "bank_id", "sample_id", "rank"))
_NEW_READING = Prepared(insert_values(_READING, "assignment_id", "text"))


def _candidates_query(gold: bool):
    submitted = (select(func.count(_A.c.id)).where(_A.c.image_id == _I.c.id, _A.c.status == SUBMITTED)
                 .scalar_subquery())
    held = select(func.count(_A.c.id)).where(_A.c.image_id == _I.c.id, _A.c.slot.is_not(None)).scalar_subquery()
    done = select(_A.c.id).where(_A.c.image_id == _I.c.id, _A.c.rater_id == bindparam("rater_id"),
                                 _A.c.status != EXPIRED).exists()
    # the rater's own row for the image: an expired lease (any other kind is excluded by ``done``), reused
    own = select(_A.c.id).where(_A.c.image_id == _I.c.id, _A.c.rater_id == bindparam("rater_id")).scalar_subquery()
    q = (select(_I.c.id, _B.c.id, _B.c.n, own).join(_B, _B.c.image_id == _I.c.id)
         .where(_I.c.project_id == bindparam("project_id"), _B.c.status == BankStatus.complete, ~done,
                _I.c.is_gold.is_(gold))
         .order_by(_I.c.resolved, submitted, held, _I.c.id).limit(25))
    if not gold:
        q = q.where(held < bindparam("m"), ~(_I.c.resolved & (submitted >= bindparam("min_raters"))))
    return q


_CANDIDATES = {gold: Prepared(_candidates_query(gold)) for gold in (False, True)}


def sample_order(project_seed: int, rater_id: int, image_id: int, n: int) -> list[int]:
    """The per-rater shuffled order of a bank's sample indices (the same on every machine and run: a string
    seed is hashed with SHA-512, independent of ``PYTHONHASHSEED``). Python's own generator, not numpy's: numpy
    releases the GIL while it seeds, and under a burst of requests this runs while the write lock is held, where
    each release costs a wait for the GIL of up to the interpreter's switch interval."""
    order = list(range(int(n)))
    random.Random(f"sample-order:{int(project_seed)}:{int(rater_id)}:{int(image_id)}").shuffle(order)
    return order


def _task(session: Session, a, k: int) -> Task:
    """The task of an assignment (an ORM row or the hot path's plain record of the same fields)."""
    rows = _TASK_IMAGES.run(session, {"bank_id": a.bank_id, "image_id": a.image_id}).all()
    by_index = {r.sample_index: r for r in rows if r.id is not None}
    samples = [TaskSample(by_index[i].id, i, by_index[i].png) for i in a.sample_order]
    return Task(a.id, a.project_id, a.image_id, a.bank_id, k, rows[0].lr_png, samples, a.served_at,
                a.lease_expires_at)


def _expire(session: Session, project_id: int, gone, now: datetime) -> None:
    """Free the slots of leases that ran out (each expiry is audited): ``gone`` the (id, rater id) of each."""
    for aid, rid in gone:
        n = _EXPIRE.run(session, {"aid": aid}).rowcount
        if n:
            _sync(session, Assignment, aid, status=EXPIRED, slot=None)
            append(session, "assignment.expired", "assignment", aid, actor_id=rid, project_id=project_id, at=now)


def _free_slot(session: Session, image_id: int, m: int) -> int | None:
    held = set(_HELD_SLOTS.run(session, {"image_id": image_id}).scalars())
    free = [s for s in range(1, m + 1) if s not in held]
    # a random free slot: concurrent raters (PostgreSQL) rarely race for the same one; the unique constraint
    # settles the races that remain
    return random.choice(free) if free else None


def _candidates(session: Session, project, rater_id: int, gold: bool) -> list[tuple[int, int, int, int | None]]:
    """(image id, bank id, bank size, the rater's expired assignment id or None) the rater may be served, fewest
    submissions first."""
    return [tuple(r) for r in _CANDIDATES[gold].run(session, {
        "rater_id": rater_id, "project_id": project.id, "m": project.raters_per_image,
        "min_raters": min_raters(project)}).all()]


def _serve(session: Session, project, rater_id: int, image_id: int, bank_id: int, n: int, own: int | None,
           gold: bool, now: datetime) -> SimpleNamespace | None:
    """Take a slot (regular images) and write the lease; None if someone else got the last slot first."""
    slot = None
    if not gold:
        slot = _free_slot(session, image_id, project.raters_per_image)
        if slot is None:
            return None
    lease = now + timedelta(seconds=project.lease_s)
    lease_values = {"status": SERVED, "slot": slot, "served_at": now, "lease_expires_at": lease}
    try:
        # a savepoint, so that losing a race for the slot leaves the transaction usable; SQLite writers hold the
        # database's write lock for the whole transaction (BEGIN IMMEDIATE), so no concurrent transaction can take
        # the slot there, and a failed INSERT undoes only itself: no savepoint (two statements fewer per task)
        with nullcontext() if _sqlite(session) else session.begin_nested():
            if own is None:
                order = sample_order(project.seed, rater_id, image_id, n)
                aid = _NEW_LEASE.run(session, {
                    "project_id": project.id, "rater_id": rater_id, "image_id": image_id, "bank_id": bank_id,
                    "is_gold": gold, "sample_order": order, "revisions": 0, **lease_values}).scalar()
            else:  # the rater's own expired lease of this image is served again
                if not session.execute(update(_A).where(_A.c.id == own, _A.c.status == EXPIRED)
                                       .values(**lease_values)).rowcount:
                    return None
                aid = own
                order = session.scalar(select(_A.c.sample_order).where(_A.c.id == own))
                _sync(session, Assignment, own, **lease_values)
    except IntegrityError:  # the slot (or this rater's row) was taken by a concurrent transaction
        return None
    append(session, "assignment.served", "assignment", aid, actor_id=rater_id, project_id=project.id, at=now,
           image_id=image_id, slot=slot, gold=gold, lease_expires_at=lease.isoformat())
    return SimpleNamespace(id=aid, project_id=project.id, image_id=image_id, bank_id=bank_id, sample_order=order,
                           served_at=now, lease_expires_at=lease)


def _sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _rater_and_project(session: Session, rater_id: int, project_id: int):
    """The active rater's project settings (one statement); the services' errors for an unknown or deactivated
    rater or an unknown project."""
    session.flush()  # the Core reads below do not autoflush
    row = None
    if _is_id(rater_id) and _is_id(project_id):
        row = _RATER_PROJECT.run(session, {"rater_id": rater_id, "project_id": project_id}).first()
    if row is None:  # unknown rater or project, or a project named: the lookups with their errors
        _active_rater(session, rater_id)
        p = get_project(session, project_id)
        return SimpleNamespace(**{c.name: getattr(p, c.name) for c in _SETTINGS})
    if not row.active:
        raise PermissionDenied(f"rater {row.name!r} is deactivated")
    return row


# ---- the services ----------------------------------------------------------------------------------------------
def next_task(session: Session, rater_id: int, project_id: int, *, now: datetime | None = None) -> Task | None:
    """The rater's current lease if it is still live, else a new one: an image this rater has not done, fewest
    submissions first, while it has fewer than ``raters_per_image`` holders; gold items at the project's rate.
    None when there is nothing left for this rater."""
    now = now or utcnow()
    project = _rater_and_project(session, rater_id, project_id)
    leases = _LEASES.run(session, {"project_id": project.id, "rater_id": rater_id, "now": now}).all()
    live = next((a for a in leases if a.rater_id == rater_id and a.lease_expires_at > now), None)
    if live is not None:
        return _task(session, live, project.k_picks)
    _expire(session, project.id, [(a.id, a.rater_id) for a in leases if a.lease_expires_at <= now], now)
    kinds = [False]
    if project.gold_rate > 0:
        total, gold_done = _GOLD_COUNTS.run(session, {"rater_id": rater_id, "project_id": project.id}).one()
        kinds = [True, False] if int(gold_done) < project.gold_rate * (int(total) + 1) else [False]
    for gold in kinds:
        for _attempt in range(20):  # concurrent raters may take the candidates first: look again
            candidates = _candidates(session, project, rater_id, gold)
            if not candidates:
                break
            for image_id, bank_id, n, own in candidates:
                a = _serve(session, project, rater_id, image_id, bank_id, n, own, gold, now)
                if a is not None:
                    return _task(session, a, project.k_picks)
    return None


def _check_picks(session: Session, a, k: int, picks: Sequence[int]) -> list[int]:
    if isinstance(picks, (str, bytes)) or not isinstance(picks, Sequence):
        raise InvalidInput(f"picks must be a list of {k} sample ids, got {type(picks).__name__}")
    picks = list(picks)
    if any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) for p in picks):
        raise InvalidInput("picks must be sample ids (integers)")
    picks = [int(p) for p in picks]
    if len(picks) != k:
        raise InvalidInput(f"pick exactly {k} samples, got {len(picks)}")
    if len(set(picks)) != k:
        raise InvalidInput("the picks must be distinct samples")
    own = set(_BANK_SAMPLES.run(session, {"bank_id": a.bank_id}).scalars())
    foreign = [p for p in picks if p not in own]
    if foreign:
        raise InvalidInput(f"sample id(s) {foreign} are not in this task's bank")
    return picks


def _check_reading(reading: str | None, project: Project) -> str | None:
    """The reading in its canonical form (NFKC; upper case for plates), refused if it holds invisible characters
    or characters outside the project's alphabet (:func:`annotation.projects.normalize_reading`)."""
    if reading is None:
        return None
    return normalize_reading(reading, project.model_name, max_len=MAX_READING)


def _window_opened(project: Project, now: datetime) -> datetime:
    """Submissions at or after this moment may still be revised (the project's ``revision_window_s``)."""
    return now - timedelta(seconds=project.revision_window_s)


def _check_revisable(a: Assignment, project: Project, now: datetime) -> None:
    """Refuse to revise anything but a submitted assignment inside the revision window."""
    if a.status != SUBMITTED:
        raise Conflict("only a submitted assignment can be revised")
    if a.submitted_at < _window_opened(project, now):
        raise Conflict(f"the revision window of {project.revision_window_s} s has closed")


def _owned(session: Session, rater_id: int, assignment_id: int, lock: bool = True) -> Assignment:
    _active_rater(session, rater_id)
    if isinstance(assignment_id, bool) or not isinstance(assignment_id, int):
        raise NotFound(f"unknown assignment id {assignment_id!r}")
    a = session.get(Assignment, assignment_id, with_for_update=lock, populate_existing=True)
    if a is None:
        raise NotFound(f"unknown assignment id {assignment_id!r}")
    if a.rater_id != rater_id:
        raise PermissionDenied("this assignment belongs to another rater")
    return a


def _owned_row(session: Session, rater_id: int, assignment_id: int):
    """:func:`_owned` in one statement (the row locked, with its project's settings), same errors."""
    session.flush()  # the Core reads below do not autoflush
    row = None
    if _is_id(rater_id) and _is_id(assignment_id):
        row = _OWNED.run(session, {"rater_id": rater_id, "aid": assignment_id}).first()
    if row is None:
        _owned(session, rater_id, assignment_id)  # raises the lookup's error
        raise NotFound(f"unknown assignment id {assignment_id!r}")
    if not row.active:
        raise PermissionDenied(f"rater {row.name!r} is deactivated")
    if row.rater_id != rater_id:
        raise PermissionDenied("this assignment belongs to another rater")
    return row


def _stored(session: Session, a: Assignment) -> tuple[list[int], str | None]:
    picks = list(session.scalars(select(Pick.sample_id).where(Pick.assignment_id == a.id).order_by(Pick.rank)))
    reading = session.scalar(select(Reading.text).where(Reading.assignment_id == a.id))
    return picks, reading


def _result(session: Session, a: Assignment, replayed: bool) -> SubmitResult:
    picks, reading = _stored(session, a)
    return SubmitResult(a.id, AssignmentStatus(a.status).value, picks, reading, a.submitted_at, a.seconds_on_task,
                        replayed, a.revisions)


def _checked_votes(session: Session, rater_id: int, assignment_id: int, picks: Sequence[int],
                   reading: str | None) -> tuple[Assignment, Project, list[int], str | None]:
    """The rater's own assignment (locked), its project, and the picks and reading checked against its bank."""
    a = _owned(session, rater_id, assignment_id)
    project = get_project(session, a.project_id)
    return a, project, _check_picks(session, a, project.k_picks, picks), _check_reading(reading, project)


def _write_votes(session: Session, a, picks: list[int], reading: str | None) -> None:
    _NEW_PICK.run_many(session, [{"assignment_id": a.id, "bank_id": a.bank_id, "sample_id": s, "rank": r + 1}
                                 for r, s in enumerate(picks)])
    if reading is not None:
        _NEW_READING.run(session, {"assignment_id": a.id, "text": reading})


def submit(session: Session, rater_id: int, assignment_id: int, picks: Sequence[int], reading: str | None = None,
           *, now: datetime | None = None) -> SubmitResult:
    """Store the rater's top-k picks (sample ids, best first) and reading, atomically with the status change.
    Replaying an identical submission is a no-op that returns the stored one."""
    now = now or utcnow()
    a = _owned_row(session, rater_id, assignment_id)  # its project's settings ride along
    picks, reading = _check_picks(session, a, a.k_picks, picks), _check_reading(reading, a)
    if a.status == SUBMITTED:
        if _stored(session, a) == (picks, reading):
            return _result(session, _owned(session, rater_id, assignment_id), replayed=True)
        raise Conflict("this assignment is already submitted with other picks; revise it instead")
    if a.status == SKIPPED:
        raise Conflict("this assignment was skipped")
    if a.status == EXPIRED:  # the lease ran out and its slot was freed: take any free slot again
        slot = None if a.is_gold else _free_slot(session, a.image_id, a.raters_per_image)
        if slot is None and not a.is_gold:
            raise LeaseExpired("the lease ran out and this image already has all its raters")
        try:
            with session.begin_nested():
                session.execute(update(_A).where(_A.c.id == a.id).values(slot=slot))
        except IntegrityError as err:
            raise LeaseExpired("the lease ran out and the last slot was just taken") from err
        _sync(session, Assignment, a.id, slot=slot)
    _write_votes(session, a, picks, reading)
    seconds = max(0.0, (now - a.served_at).total_seconds())
    _SUBMITTED.run(session, {"aid": a.id, "at": now, "seconds": seconds})
    _sync(session, Assignment, a.id, status=SUBMITTED, submitted_at=now, seconds_on_task=seconds)
    # the resolved flag adaptive serving reads (see the docstring)
    update_image_of(session, a.project_id, a.resolve_threshold, a.image_id)
    append(session, "assignment.submitted", "assignment", a.id, actor_id=rater_id, project_id=a.project_id,
           at=now, image_id=a.image_id, picks=picks, reading=reading, seconds_on_task=seconds)
    return SubmitResult(a.id, SUBMITTED.value, picks, reading, now, seconds, False, a.revisions)


def revise(session: Session, rater_id: int, assignment_id: int, picks: Sequence[int], reading: str | None = None,
           *, now: datetime | None = None) -> SubmitResult:
    """Replace a submitted assignment's picks and reading within the project's revision window. The audit log
    keeps the old ones."""
    now = now or utcnow()
    a, project, picks, reading = _checked_votes(session, rater_id, assignment_id, picks, reading)
    _check_revisable(a, project, now)
    old = _stored(session, a)
    if old == (picks, reading):
        return _result(session, a, replayed=True)
    for p in session.scalars(select(Pick).where(Pick.assignment_id == a.id)):
        session.delete(p)
    old_reading = session.scalar(select(Reading).where(Reading.assignment_id == a.id))
    if old_reading is not None:
        session.delete(old_reading)
    session.flush()
    _write_votes(session, a, picks, reading)
    a.revised_at = now
    a.revisions += 1
    session.flush()
    update_image(session, project, a.image_id)
    record(session, "assignment.revised", "assignment", a.id, actor_id=rater_id, project_id=a.project_id, at=now,
           old_picks=old[0], old_reading=old[1], picks=picks, reading=reading, revision=a.revisions)
    return _result(session, a, replayed=False)


def skip(session: Session, rater_id: int, assignment_id: int, reason: str, *,
         now: datetime | None = None) -> SubmitResult:
    """Give the task back with a reason; its slot goes to another rater. Skipping twice is a no-op."""
    now = now or utcnow()
    a = _owned(session, rater_id, assignment_id)
    reason = check_text(reason, "reason", MAX_REASON, allow_newlines=True)
    if a.status == SKIPPED:
        return _result(session, a, replayed=True)
    if a.status == SUBMITTED:
        raise Conflict("a submitted assignment cannot be skipped")
    a.status, a.slot, a.skipped_at, a.skip_reason = SKIPPED, None, now, reason
    session.flush()
    record(session, "assignment.skipped", "assignment", a.id, actor_id=rater_id, project_id=a.project_id, at=now,
           reason=reason)
    return _result(session, a, replayed=False)


def submitted_task(session: Session, rater_id: int, assignment_id: int, *,
                   now: datetime | None = None) -> tuple[Task, SubmitResult]:
    """A rater's own submitted assignment, still inside the revision window, as the task it was (same sample
    order) with what was submitted: what a Revise screen shows before :func:`revise`."""
    now = now or utcnow()
    a = _owned(session, rater_id, assignment_id, lock=False)
    project = get_project(session, a.project_id)
    _check_revisable(a, project, now)
    return _task(session, a, project.k_picks), _result(session, a, replayed=False)


def revisable(session: Session, rater_id: int, project_id: int, *, now: datetime | None = None) -> list[SubmitResult]:
    """The rater's own submissions that may still be revised (newest first)."""
    now = now or utcnow()
    project = get_project(session, project_id)
    since = _window_opened(project, now)
    rows = session.scalars(select(Assignment).where(Assignment.rater_id == rater_id,
                                                    Assignment.project_id == project.id,
                                                    Assignment.status == SUBMITTED, Assignment.submitted_at >= since)
                           .order_by(Assignment.submitted_at.desc()))
    return [_result(session, a, replayed=False) for a in rows]
