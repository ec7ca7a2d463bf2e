"""The append-only audit log: one row per state change, written in the caller's transaction, so a change and its
record commit (or roll back) together. The database refuses UPDATE and DELETE on the table (triggers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AuditLog, utcnow
from db.prepared import Prepared, insert_values


def record(session: Session, action: str, entity: str, entity_id: int | None, *, actor_id: int | None = None,
           project_id: int | None = None, at: datetime | None = None, **details: Any) -> AuditLog:
    """Append one entry (``details`` must be JSON-serialisable)."""
    row = AuditLog(action=action, entity=entity, entity_id=entity_id, actor_id=actor_id, project_id=project_id,
                   at=at or utcnow(), details=details)
    session.add(row)
    session.flush()
    return row


_INSERT = Prepared(insert_values(AuditLog.__table__, "action", "entity", "entity_id", "actor_id", "project_id", "at",
                                 "details"))


def append(session: Session, action: str, entity: str, entity_id: int | None, *, actor_id: int | None = None,
           project_id: int | None = None, at: datetime | None = None, **details: Any) -> None:
    """:func:`record` as one INSERT on the driver's connection, without an ORM object (the services' hot path;
    :mod:`db.prepared`)."""
    _INSERT.run(session, {"action": action, "entity": entity, "entity_id": entity_id, "actor_id": actor_id,
                          "project_id": project_id, "at": at or utcnow(), "details": details})


@dataclass
class AuditEntry:
    id: int
    at: datetime
    actor_id: int | None
    project_id: int | None
    action: str
    entity: str
    entity_id: int | None
    details: dict


def history(session: Session, *, entity: str | None = None, entity_id: int | None = None,
            project_id: int | None = None, action: str | None = None) -> list[AuditEntry]:
    """Entries in the order they were written, optionally filtered."""
    q = select(AuditLog).order_by(AuditLog.id)
    if entity is not None:
        q = q.where(AuditLog.entity == entity)
    if entity_id is not None:
        q = q.where(AuditLog.entity_id == entity_id)
    if project_id is not None:
        q = q.where(AuditLog.project_id == project_id)
    if action is not None:
        q = q.where(AuditLog.action == action)
    return [AuditEntry(r.id, r.at, r.actor_id, r.project_id, r.action, r.entity, r.entity_id, dict(r.details))
            for r in session.scalars(q)]
