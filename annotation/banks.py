"""Bank generation as a resumable job: a queue of bank rows, claimed one at a time, each made visible only
once complete.

    report = run_bank_jobs(Session, engine, project_id)      # the app's worker and `python -m annotation generate`

How a bank moves: ``pending`` (queued) -> ``running`` (claimed: the claim commits, so progress is visible and
other workers skip it) -> ``complete`` (every sample and the status change commit in one transaction) or
``failed`` (the engine raised; the next run, not this one, retries it, up to ``max_attempts`` in all). Only
``complete`` banks are ever served, aggregated or exported. While the engine works, a timer refreshes the
bank's heartbeat every ``heartbeat_s`` (10 s). A worker that dies (a crash, a killed process, a lost GPU box)
leaves its bank ``running`` with a heartbeat that stops; once it is older than ``stale_after_s`` (60 s) the next
run reclaims it, discards whatever samples a half-finished attempt left (the audit log records how many) and
generates it again. A worker whose claim was taken over in the meantime finds its store refused (the attempt
number no longer matches). A run ends by listing the banks it leaves unfinished (``BankJobReport.unfinished``:
failed, or running under another live worker), which ``python -m annotation generate`` names in a non-zero
exit.

Each image's bank is seeded from (project seed, image id), so banks share no sample, and every sample keeps its
own seed: ``engine.sample_bank(lr, n=1, seed=sample.seed)`` reproduces it (sr_engine's seed contract).

The bank's evidence: the engine's ``domain`` picks a reader (:func:`sr_engine.evidence.reader_for`: the
digit classifier, the plate reader, none for a diffusers pipeline), which reads every sample outside the
transaction; each sample's reading and confidence and the bank's reading counts are stored with the bank.
Analysts see them; raters never do (a task carries only pixels).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.engine import BUSY_TIMEOUT_MS, session_scope
from db.models import (Assignment, AssignmentStatus, Bank, BankStatus, Ensemble, LRImage, Project, Sample, SampleMode,
                       utcnow)
from sr_engine import Bank as SampleBank  # the engine's bank (db.models.Bank is the stored one)
from sr_engine import SREngine
from sr_engine.evidence import BankEvidence, BankReader, read_bank, reader_for
from sr_engine.spanning import spanning_subset, subset_bank

from .audit import record
from .errors import Conflict, InvalidInput, NotFound
from .images import encode_png, lr_array, removal_target
from .text import escape_for_message
from .projects import get_project

logger = logging.getLogger(__name__)

STALE_AFTER_S = 60.0  # a running bank whose heartbeat is older belongs to a dead worker and is reclaimed
HEARTBEAT_S = 10.0  # how often a working worker refreshes its bank's heartbeat (well inside STALE_AFTER_S)


@dataclass
class ClaimedBank:
    """What a worker needs to generate one bank (read in the claiming transaction)."""

    bank_id: int
    attempt: int  # the claim token: store_bank refuses a claim that was taken over
    project_id: int
    image_id: int
    lr: np.ndarray  # uint8 (h, w) or (h, w, 3)
    n: int
    seed: int
    steps: int
    mode: str
    scheduler: str
    model_name: str
    discarded_samples: int  # samples of an earlier, unfinished attempt that the claim deleted
    engine_options: dict = field(default_factory=dict)  # the project's (e.g. a diffusers pipeline's prompt)
    pool_factor: int = 1  # draw pool_factor x n samples, store the n that span them (sr_engine.spanning)


@dataclass(frozen=True)
class UnfinishedBank:
    bank_id: int
    image_id: int
    source: str  # the image's file (what an admin recognises, and may remove)
    status: str  # pending, running (another worker, heartbeat fresh) or failed
    worker: str | None
    error: str | None

    def describe(self) -> str:
        what = {"running": f"running on {self.worker or 'another worker'}",
                "failed": f"failed: {self.error or 'unknown error'}"}.get(self.status, self.status)
        return f"bank {self.bank_id} (image {self.image_id}, {self.source}): {what}"


@dataclass
class BankJobReport:
    completed: list[int] = field(default_factory=list)  # bank ids
    failed: dict[int, str] = field(default_factory=dict)  # bank id -> error
    discarded: dict[int, int] = field(default_factory=dict)  # bank id -> half-bank samples deleted
    unfinished: list[UnfinishedBank] = field(default_factory=list)  # banks not complete when the run ended
    seconds: float = 0.0


def bank_seed(project_seed: int, image_id: int) -> int:
    """A 31-bit seed drawn from (project seed, image id)."""
    return int(np.random.SeedSequence([int(project_seed), int(image_id)]).generate_state(1, np.uint64)[0] >> 33)


def enqueue_missing(session: Session, project_id: int, *, actor_id: int | None = None) -> list[int]:
    """Queue a pending bank for every image of the project that has none; returns the new bank ids."""
    project = get_project(session, project_id)
    missing = session.scalars(select(LRImage.id).where(LRImage.project_id == project_id)
                              .where(~select(Bank.id).where(Bank.image_id == LRImage.id).exists())
                              .order_by(LRImage.id)).all()
    new = []
    for image_id in missing:
        try:
            with session.begin_nested():  # another worker may queue the same image at the same moment
                bank = Bank(image_id=image_id, model_name=project.model_name, n=project.bank_size,
                            seed=bank_seed(project.seed, image_id), steps=project.steps, mode=project.mode,
                            scheduler=project.scheduler, status=BankStatus.pending, attempts=0)
                session.add(bank)
                session.flush()
        except IntegrityError:
            continue
        new.append(bank.id)
        record(session, "bank.queued", "bank", bank.id, actor_id=actor_id, project_id=project_id,
               image_id=image_id, n=bank.n, seed=bank.seed)
    return new


def claim_next(session: Session, project_ids: list[int] | None = None, *, worker: str = "",
               now: datetime | None = None, stale_after_s: float = STALE_AFTER_S, max_attempts: int = 3,
               skip: set[int] | frozenset[int] = frozenset()) -> ClaimedBank | None:
    """Claim the oldest bank that is pending, failed (fewer than ``max_attempts``), or running with a stale
    heartbeat, other than the ids in ``skip``; delete any samples an earlier attempt left. None when there is
    nothing to do."""
    now = now or utcnow()
    stale = now - timedelta(seconds=stale_after_s)
    claimable = or_(Bank.status == BankStatus.pending,
                    (Bank.status == BankStatus.failed) & (Bank.attempts < max_attempts),
                    (Bank.status == BankStatus.running) & (Bank.heartbeat_at < stale))
    q = select(Bank.id, Bank.status, Bank.attempts).join(LRImage).where(claimable).order_by(Bank.id).limit(20)
    if project_ids is not None:
        q = q.where(LRImage.project_id.in_(project_ids))
    if skip:
        q = q.where(Bank.id.not_in(skip))
    for bank_id, status, attempts in session.execute(q).all():
        # compare-and-set: only one worker moves this bank out of the state it read
        won = session.execute(
            update(Bank).where(Bank.id == bank_id, Bank.status == status, Bank.attempts == attempts)
            .values(status=BankStatus.running, attempts=attempts + 1, worker=worker[:200], started_at=now,
                    heartbeat_at=now, error=None).execution_options(synchronize_session=False)).rowcount
        if won != 1:
            continue
        discarded = session.execute(delete(Sample).where(Sample.bank_id == bank_id)
                                    .execution_options(synchronize_session=False)).rowcount or 0
        bank = session.get(Bank, bank_id, populate_existing=True)
        image = session.get(LRImage, bank.image_id)
        project = session.get(Project, image.project_id)
        options = dict(project.engine_options or {})
        if discarded:
            record(session, "bank.discarded", "bank", bank_id, project_id=image.project_id,
                   samples=int(discarded), previous_status=BankStatus(status).value)
        record(session, "bank.claimed", "bank", bank_id, project_id=image.project_id, worker=worker,
               attempt=attempts + 1)
        return ClaimedBank(bank_id=bank_id, attempt=attempts + 1, project_id=image.project_id,
                           image_id=image.id, lr=lr_array(image), n=bank.n, seed=int(bank.seed), steps=bank.steps,
                           mode=SampleMode(bank.mode).value, scheduler=bank.scheduler, model_name=bank.model_name,
                           discarded_samples=int(discarded), engine_options=options,
                           pool_factor=int(project.pool_factor or 1))
    return None


def _check_result(claim: ClaimedBank, result: SampleBank, scale: int) -> None:
    images = np.asarray(result.images)
    h, w = claim.lr.shape[:2]
    expect = (claim.n, h * scale, w * scale) + claim.lr.shape[2:]
    if images.dtype != np.uint8 or images.shape != expect:
        raise InvalidInput(f"bank images are {images.dtype} {images.shape}, expected uint8 {expect}")
    for name in ("seeds", "lr_psnr"):
        if np.asarray(getattr(result, name)).shape != (claim.n,):
            raise InvalidInput(f"bank {name} must have one value per sample")
    if not np.isfinite(np.asarray(result.lr_psnr, dtype=np.float64)).all():
        raise InvalidInput("bank LR-PSNR values must be finite")


def _opt(values: Any, i: int) -> float | None:
    if values is None:
        return None
    v = float(np.asarray(values)[i])
    return v if math.isfinite(v) else None


def store_bank(session: Session, claim: ClaimedBank, result: SampleBank, engine_config: dict, scale: int, *,
               now: datetime | None = None, evidence: BankEvidence | None = None,
               pool_counts: dict[str, int] | None = None, pool_shares: np.ndarray | None = None) -> None:
    """Write every sample of ``result`` (an ``sr_engine.Bank``) and mark the bank complete, in the caller's
    transaction, with the reader's ``evidence`` when there is one. Refused if the claim was taken over or the
    result does not fit the bank. A bank chosen from a pool stores the pool's reading counts (``pool_counts``) as
    its evidence and each sample's ``pool_shares``."""
    now = now or utcnow()
    bank = session.get(Bank, claim.bank_id, populate_existing=True, with_for_update=True)
    if bank is None:
        raise NotFound(f"unknown bank id {claim.bank_id!r}")
    if bank.status != BankStatus.running or bank.attempts != claim.attempt:
        raise Conflict(f"bank {bank.id}: the claim (attempt {claim.attempt}) was taken over; result dropped")
    _check_result(claim, result, scale)
    if session.scalar(select(func.count()).select_from(Sample).where(Sample.bank_id == bank.id)):
        raise Conflict(f"bank {bank.id} already holds samples of another attempt")
    if evidence is not None and evidence.n != claim.n:
        raise InvalidInput(f"the evidence reads {evidence.n} samples; the bank has {claim.n}")
    for i in range(claim.n):
        session.add(Sample(bank_id=bank.id, index=i, seed=int(result.seeds[i]), png=encode_png(result.images[i]),
                           lr_psnr=float(result.lr_psnr[i]), flow_consistency=_opt(result.flow_consistency, i),
                           projection_residual=_opt(getattr(result, "projection_residual", None), i),
                           reading=evidence.readings[i] if evidence is not None else None,
                           reading_confidence=float(evidence.confidence[i]) if evidence is not None else None,
                           pool_share=float(pool_shares[i]) if pool_shares is not None else None))
    bank.reader = evidence.reader if evidence is not None else None
    bank.evidence = (pool_counts or evidence.counts()) if evidence is not None else None
    bank.status = BankStatus.complete
    bank.engine_config = engine_config
    bank.checkpoint_sha256 = str(engine_config.get("checkpoint_sha256") or "") or None
    bank.finished_at = now
    bank.heartbeat_at = now
    bank.seconds = float(getattr(result, "seconds", 0.0) or 0.0)
    session.flush()
    record(session, "bank.completed", "bank", bank.id, project_id=claim.project_id, n=claim.n,
           attempt=claim.attempt, seconds=bank.seconds, min_lr_psnr=float(np.min(result.lr_psnr)))


def heartbeat(session: Session, claim: ClaimedBank, *, now: datetime | None = None) -> bool:
    """Refresh the claimed bank's heartbeat; False if the claim is no longer ours (taken over, or removed)."""
    n = session.execute(update(Bank).where(Bank.id == claim.bank_id, Bank.status == BankStatus.running,
                                           Bank.attempts == claim.attempt)
                        .values(heartbeat_at=now or utcnow()).execution_options(synchronize_session=False)).rowcount
    return n == 1


class _Heartbeat:
    """A timer thread that refreshes a claim's heartbeat every ``every`` seconds while the engine works (in its
    own short transactions). Leaving the block stops it and waits for it, so no heartbeat is in flight when the
    bank is stored."""

    def __init__(self, factory: sessionmaker, claim: ClaimedBank, every: float):
        self._factory, self._claim, self._every = factory, claim, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{claim.bank_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                with session_scope(self._factory, busy_timeout_ms=BUSY_TIMEOUT_MS) as session:
                    if not heartbeat(session, self._claim):
                        return
            except Exception:  # noqa: BLE001 - a missed heartbeat is retried at the next tick
                logger.warning("bank %d: heartbeat not written", self._claim.bank_id, exc_info=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def unfinished_banks(session: Session, project_ids: list[int]) -> list[UnfinishedBank]:
    """The banks of these projects that are not complete, oldest first (images without a bank are queued by
    every run, so they are not listed)."""
    rows = session.execute(select(Bank.id, Bank.image_id, LRImage.source, Bank.status, Bank.worker, Bank.error)
                           .join(LRImage).where(LRImage.project_id.in_(project_ids),
                                                Bank.status != BankStatus.complete).order_by(Bank.id)).all()
    return [UnfinishedBank(int(b), int(i), src, BankStatus(st).value, w, e) for b, i, src, st, w, e in rows]


def fail_bank(session: Session, claim: ClaimedBank, error: str) -> None:
    """Record a failed attempt (only if the claim is still ours); the next run retries it."""
    bank = session.get(Bank, claim.bank_id, populate_existing=True)
    if bank is None or bank.status != BankStatus.running or bank.attempts != claim.attempt:
        return
    session.execute(delete(Sample).where(Sample.bank_id == bank.id).execution_options(synchronize_session=False))
    bank.status = BankStatus.failed
    bank.error = error[:4000]
    bank.heartbeat_at = utcnow()
    record(session, "bank.failed", "bank", bank.id, project_id=claim.project_id, attempt=claim.attempt,
           error=error[:4000])


def _engine_projects(session: Session, engine: SREngine, project_id: int | None) -> list[Project]:
    if project_id is not None:
        projects = [get_project(session, project_id)]
    else:
        projects = list(session.scalars(select(Project).where(Project.model_name == engine.name)))
    for p in projects:
        if p.model_name != engine.name or int(p.scale) != int(engine.scale):
            raise InvalidInput(f"project {p.name!r} needs model {p.model_name!r} at x{p.scale}; "
                               f"this engine is {engine.name!r} at x{engine.scale}")
        if SampleMode(p.mode).value not in engine.modes:
            raise InvalidInput(f"project {p.name!r} uses mode {SampleMode(p.mode).value!r}; "
                               f"the engine supports {engine.modes}")
        unknown = set(p.engine_options or {}) - set(engine.option_names)
        if unknown:
            raise InvalidInput(f"project {p.name!r} sets {sorted(unknown)}; model {engine.name!r} does not take them")
    return projects


def configured_engine(engine: SREngine, options: dict, cache: dict | None = None) -> tuple[SREngine, dict]:
    """(engine, its config) with a project's own options: a diffusers pipeline's prompt is applied here, on the
    loaded pipeline (``engine.with_options``, weights shared); without options, the engine itself. ``cache``
    keeps one configured engine per set of options for the length of a job."""
    key = json.dumps(options, sort_keys=True)
    if cache is not None and key in cache:
        return cache[key]
    eng = engine.with_options(**options) if options else engine
    out = (eng, dict(eng.config))
    if cache is not None:
        cache[key] = out
    return out


AUTO = "auto"


def _shown(result: SampleBank, evidence: BankEvidence | None, claim: ClaimedBank):
    """A pool (pool_factor > 1) -> (the n samples that span it, their evidence, the pool's counts, pool shares);
    otherwise the bank as it is."""
    if claim.pool_factor <= 1:
        return result, evidence, None, None
    idx, shares = spanning_subset(result.images, evidence.readings if evidence is not None else None, claim.n)
    if evidence is None:
        return subset_bank(result, idx), None, None, shares
    shown = BankEvidence(evidence.reader, tuple(evidence.readings[i] for i in idx), evidence.confidence[idx])
    return subset_bank(result, idx), shown, evidence.counts(), shares


def run_bank_jobs(factory: sessionmaker, engine: SREngine, project_id: int | None = None, *, limit: int | None = None,
                  worker: str | None = None, stale_after_s: float = STALE_AFTER_S, max_attempts: int = 3,
                  heartbeat_s: float = HEARTBEAT_S,
                  on_progress: Callable[[BankJobReport], None] | None = None,
                  reader: BankReader | None | str = AUTO) -> BankJobReport:
    """Generate banks until none is left (or ``limit`` were attempted). Owns its transactions: one to queue, one
    per claim, one per stored (or failed) bank, and a heartbeat every ``heartbeat_s`` while the engine and the
    reader work outside any transaction; each waits up to the background busy timeout (30 s) for the write lock.
    ``project_id=None`` serves every project whose model is this engine's. ``reader``: ``"auto"`` (the engine's
    domain's, :func:`sr_engine.evidence.reader_for`), a reader, or None (no evidence). The report lists the banks
    left unfinished."""
    t0 = time.perf_counter()
    if isinstance(reader, str):
        if reader != AUTO:
            raise InvalidInput(f"reader must be {AUTO!r}, a reader or None, got {reader!r}")
        reader = reader_for(engine.domain)
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    report = BankJobReport()
    if not heartbeat_s > 0:
        raise InvalidInput(f"the heartbeat interval must be positive, got {heartbeat_s}")
    if heartbeat_s >= stale_after_s > 0:
        logger.warning("heartbeat every %g s but banks are reclaimed after %g s: live workers' banks may be "
                       "reclaimed", heartbeat_s, stale_after_s)

    def scope() -> AbstractContextManager[Session]:
        return session_scope(factory, busy_timeout_ms=BUSY_TIMEOUT_MS)  # background work waits patiently

    with scope() as session:
        project_ids = [p.id for p in _engine_projects(session, engine, project_id)]
        for pid in project_ids:
            enqueue_missing(session, pid)
    configured: dict[str, tuple[SREngine, dict]] = {}
    while limit is None or len(report.completed) + len(report.failed) < limit:
        with scope() as session:
            claim = claim_next(session, project_ids, worker=worker, stale_after_s=stale_after_s,
                               max_attempts=max_attempts, skip=set(report.failed))  # retried by the next run
        if claim is None:
            break
        if claim.discarded_samples:
            report.discarded[claim.bank_id] = claim.discarded_samples
        try:
            eng, config = configured_engine(engine, claim.engine_options, configured)
            with _Heartbeat(factory, claim, heartbeat_s):
                result = eng.sample_bank(claim.lr, n=claim.n * claim.pool_factor, steps=claim.steps,
                                         seed=claim.seed, mode=claim.mode, scheduler=claim.scheduler)
                evidence = read_bank(reader, result.images) if reader is not None else None
            result, evidence, counts, shares = _shown(result, evidence, claim)
            with scope() as session:
                store_bank(session, claim, result, config, int(engine.scale), evidence=evidence, pool_counts=counts,
                           pool_shares=shares)
            report.completed.append(claim.bank_id)
        except Exception as err:  # noqa: BLE001 - any engine failure is recorded and retried later
            logger.warning("bank %d failed (attempt %d)", claim.bank_id, claim.attempt, exc_info=True)
            with scope() as session:
                fail_bank(session, claim, f"{type(err).__name__}: {err}")
            report.failed[claim.bank_id] = f"{type(err).__name__}: {err}"
        if on_progress is not None:
            on_progress(report)
    with session_scope(factory, write=False) as session:
        report.unfinished = unfinished_banks(session, project_ids)
    report.seconds = time.perf_counter() - t0
    return report


@dataclass
class BankProgress:
    pending: int
    running: int
    complete: int
    failed: int
    images: int


def progress(session: Session, project_id: int) -> BankProgress:
    """How far a project's banks are (for the UI's progress display)."""
    counts = dict(session.execute(select(Bank.status, func.count()).join(LRImage)
                                  .where(LRImage.project_id == project_id).group_by(Bank.status)).all())
    images = session.scalar(select(func.count()).select_from(LRImage).where(LRImage.project_id == project_id))
    get = lambda s: int(counts.get(s, 0) or counts.get(s.value, 0))  # noqa: E731
    return BankProgress(get(BankStatus.pending), get(BankStatus.running), get(BankStatus.complete),
                        get(BankStatus.failed), int(images or 0))


def complete_bank(session: Session, image_id: int) -> Bank | None:
    """The image's bank if it is complete (the only kind anyone sees), else None."""
    return session.scalar(select(Bank).where(Bank.image_id == image_id, Bank.status == BankStatus.complete))


@dataclass(frozen=True)
class RemovedBank:
    bank_id: int
    image_id: int
    project_id: int
    source: str  # the image's file (the image stays)
    status: str  # the bank's status when it was removed
    samples: int  # deleted with it (and the bank's ensembles)
    open_assignments: int  # served or expired assignments (no picks, no skip) deleted with it


def remove_bank(session: Session, project_id: int, image_id: int, *, actor_id: int | None = None, reason: str = "",
                now: datetime | None = None, stale_after_s: float = STALE_AFTER_S) -> RemovedBank:
    """Remove an image's bank with its samples and ensembles and keep the image, so that the next run (the Admin
    view's "Generate missing banks", ``python -m annotation generate``) queues a new bank for it: a bank that used
    up its attempts, or one made by an older export of the model's checkpoint. The new bank has the same seed (the
    project's and the image's), so the same checkpoint makes the same samples.

    Nothing rated is lost: refused while a submitted or skipped assignment refers to the bank (its picks name this
    bank's samples; removing the image removes them with it, :func:`annotation.images.remove_image`), and while a
    worker is generating it (a running bank whose heartbeat is fresher than ``stale_after_s``). Open leases (served,
    nothing submitted yet) and expired ones go with it; a rater holding one is told the task is gone when they
    submit. Audited: the entry names the bank's seed, model, checkpoint, status and what was deleted. ``actor_id``,
    when given, must be an admin's."""
    project, image, reason = removal_target(session, project_id, image_id, actor_id, reason)
    bank = session.scalar(select(Bank).where(Bank.image_id == image.id).with_for_update())
    if bank is None:
        raise NotFound(f"image {image.id} ({escape_for_message(image.source)}) has no bank")
    now = now or utcnow()
    if bank.status == BankStatus.running and bank.heartbeat_at is not None \
            and bank.heartbeat_at >= now - timedelta(seconds=stale_after_s):
        raise Conflict(f"bank {bank.id} (image {image.id}) is being generated by {bank.worker or 'a worker'}; "
                       "remove it after that run")
    rated = AssignmentStatus.submitted, AssignmentStatus.skipped

    def rated_count() -> int:
        return int(session.scalar(select(func.count(Assignment.id)).where(Assignment.bank_id == bank.id,
                                                                          Assignment.status.in_(rated))) or 0)

    if n := rated_count():
        raise Conflict(f"bank {bank.id} (image {image.id}) has {n} submitted or skipped task(s): its votes and skips "
                       "depend on it. Keep it, or remove the image with them (Remove image).")
    samples = int(session.scalar(select(func.count(Sample.id)).where(Sample.bank_id == bank.id)) or 0)
    ensembles = int(session.scalar(select(func.count(Ensemble.id)).where(Ensemble.bank_id == bank.id)) or 0)
    open_ = session.execute(delete(Assignment).where(Assignment.bank_id == bank.id, Assignment.status.not_in(rated))
                            .execution_options(synchronize_session=False)).rowcount or 0
    if n := rated_count():  # a submission that committed in between (PostgreSQL): refuse, the caller rolls back
        raise Conflict(f"bank {bank.id} (image {image.id}) was just rated ({n} task(s)); it stays")
    removed = RemovedBank(bank.id, image.id, project.id, image.source, BankStatus(bank.status).value, samples,
                          int(open_))
    details = dict(image_id=image.id, source=image.source, status=removed.status, seed=int(bank.seed),
                   model_name=bank.model_name, checkpoint_sha256=bank.checkpoint_sha256, attempts=int(bank.attempts),
                   samples=samples, ensembles=ensembles, open_assignments=removed.open_assignments, reason=reason)
    # the database cascades (ON DELETE CASCADE): samples, ensembles
    session.execute(delete(Bank).where(Bank.id == bank.id).execution_options(synchronize_session=False))
    session.expunge(bank)
    record(session, "bank.removed", "bank", removed.bank_id, actor_id=actor_id, project_id=project.id, **details)
    return removed
