"""Read models for the app's screens: a rater's progress, a project's images, one image's votes and bank, a
project overview. Plain dataclasses out, so the UI (``ui/``) renders them without touching SQL.

Analyst reads check the actor's role here too (``analyst`` or ``admin``): the UI checks first, this is the second
lock. A rater's own progress needs no role: it only counts that rater's assignments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from db.models import (Assignment, AssignmentStatus, Bank, BankStatus, LRImage, Pick, Project, Rater, Reading, Sample,
                       utcnow)
from db.prepared import Prepared
from sr_engine.evidence import NOT_AVAILABLE, distribution_text

from .accounts import ANALYST_ROLES, require_role
from .aggregate import ImageAggregate, aggregate_image
from .agreement import alpha_on_picks, pairwise_jaccard
from .analysis import load_votes, project_agreement
from .banks import BankProgress, complete_bank, progress
from .consensus import ImageResolution, project_consensus
from .ensembles import EnsembleResult, latest_ensembles
from .errors import NotFound
from .exclusions import excluded_rater_ids
from .images import get_image
from .projects import get_project, list_projects
from .uncertainty import UncertaintyView, image_uncertainty


@dataclass(frozen=True)
class RaterProgress:
    done: int  # this rater's submitted or skipped tasks in the project
    total: int  # done + what can still be served to this rater now


@dataclass(frozen=True)
class ImageRow:
    id: int
    source: str
    label: str | None
    is_gold: bool
    bank_status: str | None  # None: no bank queued yet
    n_votes: int


@dataclass(frozen=True)
class SampleView:
    index: int
    png: bytes
    lr_psnr: float
    reading: str | None = None  # the domain's reader's reading (analysts only; None: no reader)
    reading_confidence: float | None = None


@dataclass(frozen=True)
class VoteRow:
    rater: str
    picks: tuple[int, ...]  # bank sample indices, best first
    reading: str | None
    seconds: float | None
    excluded: bool


@dataclass
class ImageDetail:
    id: int
    source: str
    label: str | None
    is_gold: bool
    lr_png: bytes
    k: int
    ensemble_size: int
    samples: list[SampleView]  # in bank index order; empty while the bank is not complete
    votes: list[VoteRow]  # every submitted vote, excluded raters flagged
    aggregate: ImageAggregate | None  # exclusions honoured; None without votes
    alpha_picks: float | None
    jaccard_mean: float | None
    ensemble: EnsembleResult | None  # the newest one
    evidence_reader: str | None = None  # the bank's reader; None: "not available"
    evidence: dict[str, int] | None = None  # the bank's reading counts, most frequent first
    evidence_text: str = NOT_AVAILABLE  # "5: 41 of 64, 6: 23 of 64"
    resolution: ImageResolution | None = None  # the calibrated consensus (annotation.consensus), exclusions honoured
    uncertainty: UncertaintyView | None = None  # where the bank disagrees: std and principal components


@dataclass(frozen=True)
class RaterSummary:
    name: str
    n_tasks: int
    jaccard_vs_consensus: float | None
    reading_agreement: float | None
    gold_total: int
    gold_correct: int
    median_seconds: float | None
    excluded: bool


@dataclass
class ProjectOverview:
    name: str
    model_name: str
    scale: int
    settings: dict
    banks: BankProgress
    submissions: int
    wanted: int  # regular images x raters_per_image
    skipped: int
    alpha_readings: float | None
    mean_alpha_picks: float | None
    gold_items: int
    raters: list[RaterSummary] = field(default_factory=list)


def _progress_query():
    a, i, b, p = Assignment.__table__, LRImage.__table__, Bank.__table__, Project.__table__
    # an OR, not IN (a list): a prepared statement takes no expanding parameter (SQLite makes it an IN again)
    finished = or_(a.c.status == AssignmentStatus.submitted, a.c.status == AssignmentStatus.skipped)
    rater = bindparam("rater_id")
    done = (select(func.count(a.c.id)).where(a.c.rater_id == rater, a.c.project_id == p.c.id, finished)
            .scalar_subquery())
    mine = select(a.c.id).where(a.c.image_id == i.c.id, a.c.rater_id == rater, finished).exists()
    held = (select(func.count(a.c.id)).where(a.c.image_id == i.c.id, a.c.rater_id != rater, a.c.slot.is_not(None))
            .scalar_subquery())
    submitted = (select(func.count(a.c.id)).where(a.c.image_id == i.c.id, a.c.status == AssignmentStatus.submitted)
                 .scalar_subquery())
    # adaptive overlap (annotation.tasks.min_raters: NULL is the maximum)
    stopped = i.c.resolved & (submitted >= func.coalesce(p.c.min_raters, p.c.raters_per_image))
    open_ = (select(func.count(i.c.id)).select_from(i.join(b, b.c.image_id == i.c.id))
             .where(i.c.project_id == p.c.id, b.c.status == BankStatus.complete, ~mine,
                    i.c.is_gold.is_(True) | ((held < p.c.raters_per_image) & ~stopped))
             .correlate(p).scalar_subquery())
    return select(done, open_).select_from(p).where(p.c.id == bindparam("project_id"))


_PROGRESS = Prepared(_progress_query())  # one statement, prebuilt: the app asks after every submission


def rater_progress(session: Session, rater_id: int, project_id: int) -> RaterProgress:
    """"12 of 50": what this rater has done in the project, and that plus the images still open to them (a
    complete bank, not done by them, and a free slot unless it is a gold item)."""
    if not isinstance(project_id, int) or isinstance(project_id, bool):
        project_id = get_project(session, project_id).id  # a name, or NotFound
    session.flush()  # a Core read does not autoflush
    row = _PROGRESS.run(session, {"rater_id": rater_id, "project_id": project_id}).first()
    if row is None:
        get_project(session, project_id)  # raises NotFound
        raise NotFound(f"unknown project id {project_id!r}")
    done, open_ = int(row[0] or 0), int(row[1] or 0)
    return RaterProgress(done, done + open_)


@dataclass(frozen=True)
class RaterProject:
    """A project as a rater's menu shows it: how much is left to them, and the task they hold there (if any)."""
    project_id: int
    name: str
    done: int
    remaining: int  # images still open to this rater (the held one included)
    live_assignment_id: int | None  # the rater's unexpired lease in this project: a reload returns to it


def rater_projects(session: Session, rater_id: int, *, now: datetime | None = None) -> list[RaterProject]:
    """Every project with this rater's progress and live lease, in creation order (the rater's project menu)."""
    now = now or utcnow()
    live = dict(session.execute(select(Assignment.project_id, func.max(Assignment.id)).where(
        Assignment.rater_id == rater_id, Assignment.status == AssignmentStatus.served,
        Assignment.lease_expires_at > now).group_by(Assignment.project_id)).all())
    rows = []
    for p in list_projects(session):
        prog = rater_progress(session, rater_id, p.id)
        rows.append(RaterProject(p.id, p.name, prog.done, prog.total - prog.done, live.get(p.id)))
    return rows


@dataclass(frozen=True)
class MyWork:
    """One of a rater's own submissions, as their "my work" list shows it."""
    assignment_id: int
    submitted_at: datetime
    n_picks: int
    reading: str | None
    revisions: int
    revisable_until: datetime  # after this the submission is final (the project's revision window)
    revisable: bool


def _my_work_query():
    a, pk, r, p = Assignment.__table__, Pick.__table__, Reading.__table__, Project.__table__
    picks = select(func.count(pk.c.id)).where(pk.c.assignment_id == a.c.id).scalar_subquery()
    return (select(a.c.id, a.c.submitted_at, picks, r.c.text, a.c.revisions, p.c.revision_window_s)
            .select_from(a.join(p, p.c.id == a.c.project_id).outerjoin(r, r.c.assignment_id == a.c.id))
            .where(a.c.rater_id == bindparam("rater_id"), a.c.project_id == bindparam("project_id"),
                   a.c.status == AssignmentStatus.submitted)
            .order_by(a.c.submitted_at.desc(), a.c.id.desc()).limit(bindparam("limit")))


_MY_WORK = Prepared(_my_work_query())  # one statement, prebuilt: the app shows "my work" after every submission


def my_work(session: Session, rater_id: int, project_id: int, *, limit: int = 50,
            now: datetime | None = None) -> list[MyWork]:
    """The rater's own submissions in a project, newest first (at most ``limit``), each with whether it may
    still be revised (``annotation.tasks.revise`` within the project's ``revision_window_s``)."""
    now = now or utcnow()
    if not isinstance(project_id, int) or isinstance(project_id, bool):
        project_id = get_project(session, project_id).id  # a name, or NotFound
    session.flush()  # a Core read does not autoflush
    rows = _MY_WORK.run(session, {"rater_id": rater_id, "project_id": project_id, "limit": int(limit)}).all()
    if not rows:
        get_project(session, project_id)  # NotFound for an unknown project; else the rater has none yet
        return []
    return [MyWork(aid, at, int(n or 0), text, int(rev or 0), at + timedelta(seconds=w),
                   at + timedelta(seconds=w) >= now)
            for aid, at, n, text, rev, w in rows]


def project_images(session: Session, actor_id: int, project_id: int) -> list[ImageRow]:
    require_role(session, actor_id, *ANALYST_ROLES)
    get_project(session, project_id)
    votes = (select(func.count(Assignment.id)).where(Assignment.image_id == LRImage.id,
                                                     Assignment.status == AssignmentStatus.submitted)
             .scalar_subquery())
    rows = session.execute(select(LRImage.id, LRImage.source, LRImage.label, LRImage.is_gold, Bank.status, votes)
                           .outerjoin(Bank, Bank.image_id == LRImage.id)
                           .where(LRImage.project_id == project_id).order_by(LRImage.id)).all()
    return [ImageRow(i, s, lab, bool(g), None if st is None else BankStatus(st).value, int(n or 0))
            for i, s, lab, g, st, n in rows]


def image_detail(session: Session, actor_id: int, image_id: int) -> ImageDetail:
    """One image for the analyst: LR, bank, every vote (with rater names), aggregate, agreement, ensemble."""
    require_role(session, actor_id, *ANALYST_ROLES)
    image = get_image(session, image_id)
    project = get_project(session, image.project_id)
    bank = complete_bank(session, image.id)
    samples = [] if bank is None else [
        SampleView(s.index, s.png, float(s.lr_psnr), s.reading, s.reading_confidence)
        for s in session.scalars(select(Sample).where(Sample.bank_id == bank.id).order_by(Sample.index))]
    reader = bank.reader if bank is not None else None
    counts = dict(bank.evidence) if bank is not None and bank.evidence else None
    excluded = excluded_rater_ids(session, project.id)
    everyone = load_votes(session, project.id, image_id=image.id, include_excluded=True)
    names = dict(session.execute(select(Rater.id, Rater.name).where(
        Rater.id.in_({v.rater for v in everyone}))).all()) if everyone else {}
    rows = [VoteRow(names[v.rater], v.picks, v.reading, v.seconds, v.rater in excluded) for v in everyone]
    counted = [v for v in everyone if v.rater not in excluded]
    agg = (aggregate_image(counted, image.id, bank.n, project.k_picks, project.ensemble_size)
           if counted and bank is not None else None)
    alpha = alpha_on_picks(counted, bank.n) if counted and bank is not None else None
    return ImageDetail(image.id, image.source, image.label, bool(image.is_gold), image.png, project.k_picks,
                       project.ensemble_size, samples, rows, agg, alpha,
                       pairwise_jaccard(counted) if counted else None,
                       latest_ensembles(session, project.id).get(image.id), reader, counts,
                       distribution_text(counts or {}) if reader else NOT_AVAILABLE,
                       project_consensus(session, project.id).images.get(image.id),
                       image_uncertainty(session, image.id))


def project_overview(session: Session, actor_id: int, project_id: int) -> ProjectOverview:
    """Progress, agreement and gold accuracy of a project (exclusions honoured)."""
    require_role(session, actor_id, *ANALYST_ROLES)
    project = get_project(session, project_id)
    votes = load_votes(session, project_id)
    rep = project_agreement(session, project_id, votes=votes)
    regular = session.scalar(select(func.count(LRImage.id)).where(LRImage.project_id == project_id,
                                                                  LRImage.is_gold.is_(False))) or 0
    gold = session.scalar(select(func.count(LRImage.id)).where(LRImage.project_id == project_id,
                                                               LRImage.is_gold.is_(True))) or 0
    skipped = session.scalar(select(func.count(Assignment.id)).where(
        Assignment.project_id == project_id, Assignment.status == AssignmentStatus.skipped)) or 0
    alphas = [i.alpha_picks for i in rep.images if i.alpha_picks is not None]
    excluded = excluded_rater_ids(session, project_id)
    names = dict(session.execute(select(Rater.id, Rater.name)).all())
    raters = [RaterSummary(names[r.rater], r.n_tasks, r.jaccard_vs_consensus, r.reading_agreement, r.gold_total,
                           r.gold_correct, r.median_seconds, r.rater in excluded) for r in rep.raters]
    settings = {c: getattr(project, c) for c in ("bank_size", "k_picks", "raters_per_image", "ensemble_size",
                                                 "steps", "scheduler", "seed", "gold_rate")}
    settings["mode"] = getattr(project.mode, "value", project.mode)
    return ProjectOverview(project.name, project.model_name, project.scale, settings, progress(session, project_id),
                           len(votes), int(regular) * project.raters_per_image, int(skipped), rep.alpha_readings,
                           sum(alphas) / len(alphas) if alphas else None, int(gold), raters)

