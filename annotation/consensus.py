"""The calibrated consensus of a project: who read what (exclusions honoured), the gold items and the
bank's evidence -> per image a posterior over readings, the consensus reading, its probability, and ``resolved``
when that probability reaches the project's ``resolve_threshold``.

    pc = project_consensus(session, project_id)        # a read: fits the model, writes nothing
    pc.images[image_id].reading, .probability, .resolved
    refresh_resolution(session, project_id)            # the fit, written to lr_images and projects.consensus_state
    update_image(session, project, image_id)           # after a submission: cheap, see below

The model is :func:`sr_engine.consensus.fit_consensus` (Dawid-Skene by EM, gold anchors, the bank's reading
shares as a tempered prior, a follow-what-is-shown term, a temperature), with the settings fitted on calibration
projects made from training data (:func:`sr_engine.calibration.load_calibration`). Which labels: digits when the
banks were read by the digit classifier (or the model is an ``mnist-`` one; settings from MNIST training rows),
plate strings per position (:func:`sr_engine.consensus.fit_plate_consensus`; settings from training plates,
``data/consensus/plates-x4.json``, or its one-coin default when that file is missing) when read by the plate reader
(or the model is a ``plates-`` one), and otherwise the distinct readings typed (no evidence).
Readings outside the digits count in one ``<other>`` bucket: a rater's typo is a vote for "not a digit", never an
error.

Resolution on submit (the approximation): a full EM per submission would cost O(all votes) inside every submit
transaction, so :func:`update_image` recomputes only the submitted image's posterior with the raters' confusion
matrices, class prior and follow rate of the last project-level fit (``projects.consensus_state``), which is
refreshed when the project's submissions grew by ``max(10, 25%)`` since the last fit (a geometric schedule:
O(log n) refits), and for plates at every submission (no per-image shortcut). The services refit inside the
submit that finds the state stale; the app hands that refit to :class:`BackgroundRefit` (``session.info
[DEFER_REFIT]``), which fits in a read-only transaction and writes in a short one, so a submission never holds
the store's write lock for an EM (the image itself is still updated in the submit, from the state there is). A
rater the last fit has not seen gets the prior's accuracy (the pseudo-counts' diagonal share). So a resolved flag
may lag a refit behind what a full fit would say; :func:`refresh_resolution` (the analyst's view and the exports
compute the full fit) brings every image up to date. An exclusion takes effect at the next refit (the app asks
for one when an analyst changes an exclusion).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sqlalchemy import Text, and_, bindparam, cast, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from db.engine import session_scope, writers_active
from db.models import Assignment, AssignmentStatus, Bank, BankStatus, LRImage, Project, RaterExclusion, Reading
from db.prepared import Prepared
from sr_engine.calibration import load_calibration
from sr_engine.consensus import (
    DIGITS,
    ConsensusConfig,
    Rating,
    evidence_log_prior,
    fit_consensus,
    fit_plate_consensus,
)
from sr_engine.reliability import apply_temperature
from sr_engine.evidence import NOT_AVAILABLE, distribution_text
from sr_engine.plates import ALPHABET

from .analysis import gold_labels, load_votes
from .positions import normalise
from .projects import get_project

logger = logging.getLogger(__name__)

Kind = Literal["digits", "plates", "text"]
YIELD_POLL_S = 0.05  # how often a refit that yields to requests looks again
DEFER_REFIT = "annotation.consensus.defer_refit"  # Session.info key: a callable(project_id) that refits later
POSTERIOR_MIN = 1e-3  # posterior entries below this are left out of the stored / exported posterior


@dataclass(frozen=True)
class ImageResolution:
    image_id: int
    reading: str | None  # the consensus reading (None: no votes, no evidence)
    probability: float | None  # its calibrated probability, 0..1
    resolved: bool  # probability >= the project's resolve threshold
    n_votes: int  # readings counted (exclusions honoured, blank and "?" are no vote)
    posterior: dict[str, float]  # reading -> probability, entries >= POSTERIOR_MIN, most probable first
    evidence_reader: str | None  # the bank's reader, None: "not available"
    evidence: dict[str, int] | None  # the bank's reading counts

    @property
    def evidence_text(self) -> str:
        return distribution_text(self.evidence or {}) if self.evidence_reader else NOT_AVAILABLE


@dataclass
class ProjectConsensus:
    project_id: int
    kind: Kind
    threshold: float
    config: ConsensusConfig
    images: dict[int, ImageResolution]
    rater_accuracy: dict[int, float] = field(default_factory=dict)  # rater id -> estimated accuracy
    follow_rate: float = 0.0
    state: dict | None = None  # what update_image needs (digits / text: confusions per rater), JSON-ready


def bank_evidence(session: Session, project_id: int) -> dict[int, tuple[str | None, dict[str, int] | None]]:
    """image id -> (reader, reading counts) of its complete bank."""
    rows = session.execute(select(Bank.image_id, Bank.reader, Bank.evidence).join(LRImage).where(
        LRImage.project_id == project_id, Bank.status == BankStatus.complete)).all()
    return {i: (r, dict(e) if e else None) for i, r, e in rows}


def project_kind(project: Project, readers: set[str | None]) -> Kind:
    if "digit-classifier" in readers or project.model_name.startswith("mnist"):
        return "digits"
    if "plate-reader" in readers or project.model_name.startswith("plates"):
        return "plates"
    return "text"


def consensus_config(kind: Kind) -> ConsensusConfig:
    """Digits and plates: their calibrated settings (each kind's own file; the uncalibrated default when it is
    missing); free text: no evidence, no follow."""
    if kind in ("digits", "plates"):
        return load_calibration(kind=kind)
    return ConsensusConfig(beta=0.0, follow="off", unknown="other")


def _clean(kind: Kind, text: str | None) -> str | None:
    if text is None:
        return None
    return normalise(text) if kind == "plates" else text.strip()


def _posterior_dict(labels, row) -> dict[str, float]:
    pairs = sorted(((lab, float(p)) for lab, p in zip(labels, row) if p >= POSTERIOR_MIN), key=lambda x: -x[1])
    return dict(pairs)


def project_consensus(session: Session, project_id: int) -> ProjectConsensus:
    """The full fit over the project's current votes (exclusions honoured), gold items and evidence. Writes
    nothing (see :func:`refresh_resolution`)."""
    project = get_project(session, project_id)
    evidence = bank_evidence(session, project_id)
    kind = project_kind(project, {r for r, _ in evidence.values()})
    config = consensus_config(kind)
    threshold = float(project.resolve_threshold)
    image_ids = list(session.scalars(select(LRImage.id).where(LRImage.project_id == project_id)
                                     .order_by(LRImage.id)))
    votes = load_votes(session, project_id)
    ratings = [Rating(v.image, v.rater, _clean(kind, v.reading)) for v in votes]
    gold = {i: _clean(kind, t) for i, t in gold_labels(session, project_id).items()}
    counts = {i: e for i, (r, e) in evidence.items() if r and e}
    n_votes: dict[int, int] = defaultdict(int)
    for r in ratings:
        if r.reading and set(r.reading) != {"?"}:
            n_votes[r.image] += 1
    out: dict[int, ImageResolution] = {}
    state = None
    if kind == "plates":
        res = fit_plate_consensus(ratings, ALPHABET, gold=gold, evidence=counts, images=image_ids, config=config)
        for c in res.images:
            ev = evidence.get(c.image, (None, None))
            post = {c.reading: c.probability} if c.reading is not None else {}
            out[c.image] = ImageResolution(c.image, c.reading, c.probability if c.reading else None,
                                           bool(c.reading) and c.is_resolved(threshold), n_votes[c.image], post,
                                           ev[0], ev[1])
        accuracy = {r.rater: r.accuracy for r in res.raters}
        follow = res.follow_rate
    else:
        if kind == "digits":
            labels, config = DIGITS, _with(config, unknown="other")
            gold = {i: t for i, t in gold.items() if t}
        else:
            labels = tuple(sorted({r.reading for r in ratings if r.reading and set(r.reading) != {"?"}}
                                  | {t for t in gold.values() if t})) or ("?",)
            if labels == ("?",):
                labels = ("(none)",)
            counts = {}
        res = fit_consensus(ratings, labels, gold=gold, evidence=counts, images=image_ids, config=config)
        for c in res.images:
            ev = evidence.get(c.image, (None, None))
            has = n_votes[c.image] > 0 or c.gold or c.evidence is not None
            out[c.image] = ImageResolution(c.image, c.reading if has else None, c.probability if has else None,
                                           has and c.is_resolved(threshold), n_votes[c.image],
                                           _posterior_dict(res.labels, c.posterior) if has else {}, ev[0], ev[1])
        accuracy = {r.rater: r.accuracy for r in res.raters}
        follow = res.follow_rate
        state = {"kind": kind, "labels": list(res.labels), "class_prior": res.class_prior.tolist(),
                 "follow_rate": follow, "config": config.to_dict(),
                 "confusion": {str(r.rater): np.round(r.confusion, 6).tolist() for r in res.raters}}
    return ProjectConsensus(project_id, kind, threshold, config, out, accuracy, follow, state)


def _with(config: ConsensusConfig, **changes) -> ConsensusConfig:
    return ConsensusConfig.from_dict({**config.to_dict(), **changes})


def _submissions(session: Session, project_id: int) -> int:
    return int(session.scalar(select(func.count(Assignment.id)).where(
        Assignment.project_id == project_id, Assignment.status == AssignmentStatus.submitted)) or 0)


def _lock_project(session: Session, project_id: int) -> Project:
    """The project row, locked for the refit's writes (see :func:`refresh_resolution` for the lock's kind)."""
    project = session.get(Project, project_id, with_for_update={"key_share": True}, populate_existing=True)
    if project is None:
        get_project(session, project_id)  # raises NotFound
    return project


def _write_resolution(session: Session, project: Project, pc: ProjectConsensus, submissions: int) -> None:
    rows = [{"image_id": img.image_id, "reading": img.reading, "probability": img.probability,
             "resolved": img.resolved} for img in sorted(pc.images.values(), key=lambda i: i.image_id)]
    if rows:  # one executemany, in image id order (the refit's write holds the write lock: keep it short)
        _WRITE_IMAGE.run_many(session, rows)
    state = dict(pc.state or {"kind": pc.kind})
    state["n_submissions"] = submissions
    project.consensus_state = state
    session.flush()


def refresh_resolution(session: Session, project_id: int) -> ProjectConsensus:
    """Fit the project and write every image's consensus and resolved flag, and the fit's state (the rater
    model :func:`update_image` uses). The project row is locked first (one refit at a time; images after, in id
    order). The lock is PostgreSQL's ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: every insert that references the
    project (an assignment, an audit row) takes ``FOR KEY SHARE`` on its row, which ``FOR UPDATE`` would wait for
    while holding the rows those inserts wait for (a deadlock under concurrent submissions)."""
    project = _lock_project(session, project_id)
    pc = project_consensus(session, project_id)
    _write_resolution(session, project, pc, _submissions(session, project_id))
    return pc


def _submitted_per_image(session: Session, project_id: int) -> dict[int, int]:
    return dict(session.execute(select(Assignment.image_id, func.count(Assignment.id)).where(
        Assignment.project_id == project_id, Assignment.status == AssignmentStatus.submitted)
        .group_by(Assignment.image_id)).all())


def refit_project(factory: sessionmaker[Session], project_id: int) -> ProjectConsensus:
    """:func:`refresh_resolution` in two transactions, for a refit outside a request: the fit in a read-only one
    (it never holds the store's write lock while EM runs), then a short write of its results. An image that got
    a submission between the two is brought up to date with the new rater model in the write (a revision in
    that gap waits for the next refit, as any resolved flag may lag one; see the module's docstring)."""
    with session_scope(factory, write=False) as s:
        pc = project_consensus(s, project_id)
        seen = _submitted_per_image(s, project_id)
    with session_scope(factory) as s:
        project = _lock_project(s, project_id)
        now = _submitted_per_image(s, project_id)
        _write_resolution(s, project, pc, sum(now.values()))
        if pc.state is not None and "confusion" in pc.state:
            for image_id in sorted(i for i, n in now.items() if seen.get(i) != n):
                _update_one(s, project.id, float(project.resolve_threshold), project.consensus_state, image_id)
    return pc


class BackgroundRefit:
    """Project refits off the request path: :meth:`schedule` (cheap, from any thread) asks for a refit of a
    project; one daemon thread runs :func:`refit_project` for each project asked for, once per burst of requests
    (requests that arrive while a refit runs ask for one more after it). Put :meth:`schedule` into a write
    session's ``info[DEFER_REFIT]`` and :func:`update_image` uses it instead of refitting inside that
    transaction. A refit that fails is logged and retried at the next request for it.

    ``min_interval_s``: a project's next refit starts at least this long after its last one ended, so a stream of
    submissions refits the project every ``min_interval_s`` instead of back to back (each submission updates its
    own image from the last fit meanwhile). ``yield_s``: a refit that is due waits while requests hold or wait for
    the store's write lock (:func:`db.engine.writers_active`), or released it less than ``quiet_s`` ago, up to
    ``yield_s``, so a burst of submissions is not slowed by it (the lock is free for moments inside a burst, between
    one request's commit and the next one's arrival: ``quiet_s`` keeps a refit from starting in such a gap).
    ``schedule(..., now=True)`` (an analyst's exclusion) waits for neither."""

    def __init__(self, factory: sessionmaker[Session], min_interval_s: float = 0.0, yield_s: float = 0.0,
                 quiet_s: float = 0.0):
        self.factory = factory
        self.min_interval_s = float(min_interval_s)
        self.yield_s = float(yield_s)
        self.quiet_s = float(quiet_s)
        self._pending: set[int] = set()
        self._urgent: set[int] = set()
        self._last_end: dict[int, float] = {}  # project -> when its last refit ended (time.monotonic)
        self._asked: dict[int, float] = {}  # pending project -> when it was first asked for
        self._wake = threading.Condition()
        self._closed = False
        self.refits = 0  # refits done (for tests and the logs)
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="consensus-refit", daemon=True)
        self._thread.start()

    def schedule(self, project_id: int, *, now: bool = False) -> None:
        with self._wake:
            if int(project_id) not in self._pending:
                self._asked[int(project_id)] = time.monotonic()
            self._pending.add(int(project_id))
            if now:
                self._urgent.add(int(project_id))
            self._wake.notify()

    @property
    def running(self) -> bool:
        """Whether a refit has started and not ended."""
        with self._wake:
            return self._busy

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until no refit is pending or running (tests, shutdown); False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(left)
        return True

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=10)

    def _next(self) -> int | None:
        """The project to refit now (under ``_wake``); waits until one is due; None once closed."""
        while not self._closed:
            if not self._pending:
                self._wake.wait()
                continue
            t = time.monotonic()
            due = {p: t if p in self._urgent else self._last_end.get(p, -math.inf) + self.min_interval_s
                   for p in self._pending}
            project_id = min(due, key=lambda p: (due[p], p))
            if due[project_id] > t:
                self._wake.wait(due[project_id] - t)
            elif (project_id not in self._urgent and writers_active(self.factory, self.quiet_s)
                  and t < max(due[project_id], self._asked.get(project_id, t)) + self.yield_s):
                self._wake.wait(YIELD_POLL_S)  # requests are writing: look again shortly
            else:
                return project_id
        return None

    def _run(self) -> None:
        while True:
            with self._wake:
                project_id = self._next()
                if project_id is None:
                    return
                self._pending.discard(project_id)
                self._urgent.discard(project_id)
                self._asked.pop(project_id, None)
                self._busy = True
            try:
                refit_project(self.factory, project_id)
                self.refits += 1
            except Exception:  # a refit must never take the thread down; the next request asks again
                logger.exception("background consensus refit of project %d failed", project_id)
            finally:
                with self._wake:
                    self._last_end[project_id] = time.monotonic()
                    self._busy = False
                    self._wake.notify_all()


def _stale(state: dict | None, submissions: int) -> bool:
    if not state or state.get("kind") not in ("digits", "text") or "confusion" not in state:
        return True
    fitted = int(state.get("n_submissions", 0))
    return submissions >= fitted + max(10, fitted // 4)


def _per_image(state: dict | None) -> bool:
    """Whether a state can update one image alone (digits and free text; plates have no per-image shortcut)."""
    return bool(state) and state.get("kind") in ("digits", "text") and "confusion" in state


def image_posterior(state: dict, readings: dict[int, str], evidence: dict[str, int] | None,
                    gold: str | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """One image's posterior with the parameters of the last fit fixed: p(k) ∝ pi_k (e_k + eps)^beta
    prod_r [(1 - f) C_r[k, l_r] + f s_l], then the temperature (the E-step of sr_engine.consensus for one item).
    readings: rater id -> reading; a reading outside the labels is ``<other>`` if the labels have it, else no vote."""
    labels = tuple(state["labels"])
    config = ConsensusConfig.from_dict(state["config"])
    K = len(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    if gold is not None and gold in index:
        return labels, np.eye(K)[index[gold]]
    ev = np.zeros(K)
    for text, n in (evidence or {}).items():
        if text in index:
            ev[index[text]] += n
    ev = ev / ev.sum() if ev.sum() > 0 else ev
    shown = ev if ev.sum() > 0 else np.full(K, 1.0 / K)
    log_p = np.log(np.asarray(state["class_prior"], dtype=np.float64)) + evidence_log_prior(
        ev[None], config.beta, config.eps)[0]
    f = float(state.get("follow_rate", 0.0))
    prior_acc = config.diagonal_pseudocount / (config.diagonal_pseudocount + config.off_diagonal_pseudocount)
    default = np.full((K, K), (1 - prior_acc) / max(K - 1, 1))
    np.fill_diagonal(default, prior_acc)
    for rater, text in readings.items():
        k = index.get(text, index.get("<other>"))
        if k is None:
            continue
        conf = np.asarray(state["confusion"].get(str(rater), default), dtype=np.float64)
        log_p += np.log(np.maximum((1 - f) * conf[:, k] + f * shown[k], 1e-300))
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    return labels, apply_temperature(p[None], config.temperature)[0]


_STATES: dict[tuple[int, int], tuple[str, dict]] = {}  # (id of the engine, project id) -> (stored JSON, parsed)
_STATES_LOCK = threading.Lock()
_A, _I, _B, _X = Assignment.__table__, LRImage.__table__, Bank.__table__, RaterExclusion.__table__
_P = Project.__table__
SUBMITTED = AssignmentStatus.submitted
# a submission's look at the consensus: the last fit's stored text and the project's submissions (one statement)
_STATE_AND_SUBMISSIONS = Prepared(select(
    cast(_P.c.consensus_state, Text),
    select(func.count(_A.c.id)).where(_A.c.project_id == bindparam("project_id"), _A.c.status == SUBMITTED)
    .scalar_subquery()).where(_P.c.id == bindparam("project_id")))
# one image's counted readings: submitted, of raters not excluded from the project (as load_votes). An image's
# assignments are all of its project: no project filter, which would steer SQLite to the (project, status) index
# (every submission of the project) instead of the image's own rows
_IMAGE_READINGS = Prepared(
    select(_A.c.rater_id, Reading.__table__.c.text)
    .join(Reading.__table__, Reading.__table__.c.assignment_id == _A.c.id)
    .where(_A.c.image_id == bindparam("image_id"), _A.c.status == SUBMITTED,
           _A.c.rater_id.not_in(select(_X.c.rater_id).where(_X.c.project_id == bindparam("project_id"))))
    .order_by(_A.c.rater_id))
# the image's gold label and its complete bank's evidence
_IMAGE_EVIDENCE = Prepared(
    select(_I.c.label, _I.c.is_gold, _B.c.reader, _B.c.evidence)
    .select_from(_I.outerjoin(_B, and_(_B.c.image_id == _I.c.id, _B.c.status == BankStatus.complete)))
    .where(_I.c.id == bindparam("image_id")))
_WRITE_IMAGE = Prepared(update(_I).where(_I.c.id == bindparam("image_id"))
                        .values(consensus_reading=bindparam("reading"),
                                consensus_probability=bindparam("probability"), resolved=bindparam("resolved")))


def _parsed_state(session: Session, project_id: int, raw: str | None) -> dict | None:
    """The project's last fit (``projects.consensus_state``), parsed once per distinct stored text: a submission
    reads the text (cheap) and reuses the parsed dict while it is unchanged (tens of KB of JSON otherwise parsed
    in every submit, inside the write lock)."""
    if raw is None or raw == "null":
        return None
    key = (id(session.get_bind()), int(project_id))
    with _STATES_LOCK:
        hit = _STATES.get(key)
    if hit is not None and hit[0] == raw:
        return hit[1]
    state = json.loads(raw)
    with _STATES_LOCK:
        _STATES[key] = (raw, state)
    return state


def update_image(session: Session, project: Project, image_id: int) -> ImageResolution | None:
    """After a submission (in its transaction): refit the project if its state is stale (or it is not a
    categorical project), else recompute this image's consensus from the stored rater model. Returns the image's
    resolution (None for an image the refit did not cover).

    With a refit scheduler in ``session.info[DEFER_REFIT]`` (the app's :class:`BackgroundRefit`), a stale state
    asks it for a refit instead, and the image is updated from the state it has (plates and a project's first
    submissions, which have none, wait for that refit)."""
    session.flush()  # the Core statements below do not autoflush
    return update_image_of(session, project.id, float(project.resolve_threshold), image_id)


def update_image_of(session: Session, project_id: int, threshold: float, image_id: int) -> ImageResolution | None:
    """:func:`update_image` for a project given by its id and ``resolve_threshold`` (a submission has both)."""
    raw, submissions = _STATE_AND_SUBMISSIONS.run(session, {"project_id": project_id}).one()
    state = _parsed_state(session, project_id, raw)
    if _stale(state, int(submissions or 0)):
        later = session.info.get(DEFER_REFIT)
        if later is None:
            return refresh_resolution(session, project_id).images.get(image_id)
        later(project_id)
        if not _per_image(state):
            return None
    return _update_one(session, project_id, threshold, state, image_id)


def _update_one(session: Session, project_id: int, threshold: float, state: dict,
                image_id: int) -> ImageResolution:
    kind: Kind = state["kind"]
    rows = _IMAGE_READINGS.run(session, {"image_id": image_id, "project_id": project_id}).all()
    readings = {r: t for r, text in rows if (t := _clean(kind, text)) and set(t) != {"?"}}
    label, is_gold, reader, evidence = _IMAGE_EVIDENCE.run(session, {"image_id": image_id}).one()
    counts = dict(evidence) if evidence else None
    gold = _clean(kind, label) if is_gold else None
    labels, post = image_posterior(state, readings, counts if kind == "digits" else None, gold)
    k = int(np.argmax(post))
    has = bool(readings) or gold is not None or (kind == "digits" and bool(counts))
    prob = float(post[k]) if has else None
    res = ImageResolution(image_id, labels[k] if has else None, prob,
                          has and prob >= float(threshold), len(readings),
                          _posterior_dict(labels, post) if has else {}, reader, counts)
    _WRITE_IMAGE.run(session, {"image_id": image_id, "reading": res.reading, "probability": res.probability,
                               "resolved": res.resolved})
    if session.identity_map:  # an image the session holds sees its new consensus
        image = session.identity_map.get(identity_key(LRImage, image_id))
        if image is not None:
            for key, value in (("consensus_reading", res.reading), ("consensus_probability", res.probability),
                               ("resolved", res.resolved)):
                set_committed_value(image, key, value)
    return res


def bank_evidence_one(session: Session, image_id: int) -> tuple[str | None, dict[str, int] | None]:
    row = session.execute(select(Bank.reader, Bank.evidence).where(
        Bank.image_id == image_id, Bank.status == BankStatus.complete)).first()
    return (row[0], dict(row[1]) if row[1] else None) if row else (None, None)
