"""From the store to plain records and back: the votes of a project (exclusions honoured) as
:class:`~annotation.aggregate.Vote` records, and the aggregation and agreement of a project computed from them.
Analyst views and exports read through here, so every number they show comes from one place."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from db.models import Assignment, AssignmentStatus, Bank, BankStatus, LRImage, Pick, Reading, Sample

from .aggregate import ImageAggregate, Vote, aggregate_image
from .agreement import ProjectAgreement, agreement_report
from .exclusions import excluded_rater_ids
from .projects import get_project


@dataclass(frozen=True)
class PickRow:
    """One stored pick with its context (the export's row)."""

    assignment_id: int
    image_id: int
    rater_id: int
    sample_id: int
    sample_index: int
    rank: int


def _honour_exclusions(session: Session, q: Select, project_id: int, include_excluded: bool) -> Select:
    """``q`` (over ``Assignment``) without the raters an analyst excluded from the project, unless
    ``include_excluded``."""
    if not include_excluded:
        excluded = excluded_rater_ids(session, project_id)
        if excluded:
            q = q.where(Assignment.rater_id.not_in(excluded))
    return q


def load_votes(session: Session, project_id: int, *, image_id: int | None = None,
               include_excluded: bool = False) -> list[Vote]:
    """Submitted votes of a project (or one image), picks as bank sample indices, best first. Raters excluded
    by an analyst are left out unless ``include_excluded``."""
    get_project(session, project_id)
    q = (select(Assignment.id, Assignment.rater_id, Assignment.image_id, Assignment.seconds_on_task, Reading.text)
         .outerjoin(Reading, Reading.assignment_id == Assignment.id)
         .where(Assignment.project_id == project_id, Assignment.status == AssignmentStatus.submitted)
         .order_by(Assignment.image_id, Assignment.rater_id))
    if image_id is not None:
        q = q.where(Assignment.image_id == image_id)
    rows = session.execute(_honour_exclusions(session, q, project_id, include_excluded)).all()
    picks: dict[int, list[int]] = defaultdict(list)
    if rows:
        pq = (select(Pick.assignment_id, Sample.index).join(Sample, Sample.id == Pick.sample_id)
              .join(Assignment, Assignment.id == Pick.assignment_id)
              .where(Assignment.project_id == project_id, Assignment.status == AssignmentStatus.submitted)
              .order_by(Pick.assignment_id, Pick.rank))
        if image_id is not None:
            pq = pq.where(Assignment.image_id == image_id)
        for aid, idx in session.execute(pq):
            picks[aid].append(int(idx))
    return [Vote(rater=r, image=img, picks=tuple(picks[aid]), reading=text, seconds=sec)
            for aid, r, img, sec, text in rows]


def bank_sizes(session: Session, project_id: int) -> dict[int, int]:
    """image id -> n of its complete bank."""
    return dict(session.execute(select(LRImage.id, Bank.n).join(Bank, Bank.image_id == LRImage.id).where(
        LRImage.project_id == project_id, Bank.status == BankStatus.complete)).all())


def gold_labels(session: Session, project_id: int) -> dict[int, str]:
    return dict(session.execute(select(LRImage.id, LRImage.label).where(
        LRImage.project_id == project_id, LRImage.is_gold.is_(True))).all())


def image_aggregates(session: Session, project_id: int, *, include_excluded: bool = False,
                     votes: list[Vote] | None = None) -> dict[int, ImageAggregate]:
    """Approval, Borda, Plackett-Luce, most-voted order, consensus reading and readings per position of every
    image with votes."""
    project = get_project(session, project_id)
    votes = load_votes(session, project_id, include_excluded=include_excluded) if votes is None else votes
    sizes = bank_sizes(session, project_id)
    by_image: dict[int, list[Vote]] = defaultdict(list)
    for v in votes:
        by_image[v.image].append(v)
    return {img: aggregate_image(vs, img, sizes[img], project.k_picks, project.ensemble_size)
            for img, vs in sorted(by_image.items())}


def project_agreement(session: Session, project_id: int, *, include_excluded: bool = False,
                      votes: list[Vote] | None = None) -> ProjectAgreement:
    """Alphas, Jaccard, each rater against the consensus, gold accuracy and median time of a project."""
    project = get_project(session, project_id)
    votes = load_votes(session, project_id, include_excluded=include_excluded) if votes is None else votes
    return agreement_report(votes, bank_sizes(session, project_id), project.k_picks, gold_labels(session, project_id))


def pick_rows(session: Session, project_id: int, *, include_excluded: bool = False) -> list[PickRow]:
    """Every stored pick of the project's submitted assignments (exclusions honoured)."""
    get_project(session, project_id)
    q = (select(Pick.assignment_id, Assignment.image_id, Assignment.rater_id, Pick.sample_id, Sample.index,
                Pick.rank)
         .join(Assignment, Assignment.id == Pick.assignment_id).join(Sample, Sample.id == Pick.sample_id)
         .where(Assignment.project_id == project_id, Assignment.status == AssignmentStatus.submitted)
         .order_by(Assignment.image_id, Assignment.rater_id, Pick.rank))
    return [PickRow(*r) for r in session.execute(_honour_exclusions(session, q, project_id, include_excluded)).all()]
