"""Analysts' exclusions of raters: an excluded rater's votes are left out of a project's aggregation, agreement,
ensembles and exports (not out of the store: the votes and the audit log keep them)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import RaterExclusion

from .accounts import ANALYST_ROLES, check_text, get_rater, require_role
from .audit import record
from .projects import get_project


def exclude_rater(session: Session, analyst_id: int, project_id: int, rater_id: int, reason: str) -> None:
    """Leave ``rater_id``'s votes out of ``project_id``'s aggregation and exports (analysts and admins)."""
    require_role(session, analyst_id, *ANALYST_ROLES)
    check_text(reason, "reason", 2000, allow_newlines=True)
    project_id = get_project(session, project_id).id
    get_rater(session, rater_id)
    exists = session.scalar(select(RaterExclusion.id).where(RaterExclusion.project_id == project_id,
                                                            RaterExclusion.rater_id == rater_id))
    if exists is not None:
        return  # idempotent
    session.add(RaterExclusion(project_id=project_id, rater_id=rater_id, excluded_by=analyst_id, reason=reason))
    session.flush()
    record(session, "rater.excluded", "rater", rater_id, actor_id=analyst_id, project_id=project_id, reason=reason)


def include_rater(session: Session, analyst_id: int, project_id: int, rater_id: int) -> None:
    """Undo an exclusion."""
    require_role(session, analyst_id, *ANALYST_ROLES)
    gone = session.execute(delete(RaterExclusion).where(RaterExclusion.project_id == project_id,
                                                        RaterExclusion.rater_id == rater_id)).rowcount
    if gone:
        record(session, "rater.included", "rater", rater_id, actor_id=analyst_id, project_id=project_id)


def excluded_rater_ids(session: Session, project_id: int) -> set[int]:
    """The raters whose votes the project's aggregation, agreement and exports leave out."""
    return set(session.scalars(select(RaterExclusion.rater_id).where(RaterExclusion.project_id == project_id)))
