"""Every table of the annotation store (SQLAlchemy 2.x typed ORM), with its invariants in the database.

Invariants the database itself enforces (named, so that errors and migrations can refer to them):
- unique: one image per content hash and project, one bank per image, one sample per (bank, index),
  one assignment per (rater, image), one rater per slot of an image (``uq_assignment_image_slot``: never two
  raters holding the same one of the ``raters_per_image`` slots), one pick per (assignment, rank) and per
  (assignment, sample), one reading per assignment, one exclusion per (project, rater);
- composite foreign keys: a pick's sample belongs to the bank its assignment was served from;
- checks: positive sizes, ``k_picks <= bank_size``, ranks >= 1, gold items carry a label, ...;
- named enums (one ``sample_mode`` enum holds every engine's modes);
- the audit log is append-only: triggers refuse UPDATE and DELETE (SQLite and PostgreSQL).

Column names never rely on case (SQLite ignores it): ``raters_per_image``, ``ensemble_size``, not ``M``, ``m``.
Timestamps are naive UTC (``db.models.utcnow``) on every backend.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.schema import DDL

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(constraint_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Naive UTC now: what every timestamp column stores (SQLite keeps no time zone)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


# ---- enums (one name each; shared by every table that uses them) -------------------------------------------
class SampleMode(str, enum.Enum):
    """Every engine's sampling modes (sr_engine.MODES): flow engine strict/flow/prior, diffusers strict/guided/free."""

    strict = "strict"
    flow = "flow"
    prior = "prior"
    guided = "guided"
    free = "free"


class BankStatus(str, enum.Enum):
    pending = "pending"  # queued, nothing generated
    running = "running"  # claimed by a worker; its samples are invisible until complete
    complete = "complete"  # all samples stored: the only status raters are served from
    failed = "failed"  # the last attempt raised; the next run retries it


class Role(str, enum.Enum):
    rater = "rater"
    analyst = "analyst"
    admin = "admin"


class AssignmentStatus(str, enum.Enum):
    served = "served"  # a lease: holds a slot until lease_expires_at
    submitted = "submitted"
    skipped = "skipped"
    expired = "expired"  # the lease ran out before a submission; its slot was freed


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, create_constraint=True, native_enum=True, validate_strings=True,
                values_callable=lambda e: [m.value for m in e])


SAMPLE_MODE = _enum(SampleMode, "sample_mode")
BANK_STATUS = _enum(BankStatus, "bank_status")
ROLE = _enum(Role, "rater_role")
ASSIGNMENT_STATUS = _enum(AssignmentStatus, "assignment_status")


# ---- tables --------------------------------------------------------------------------------------------------
class Project(Base):
    """One rating campaign: which model makes the banks and how votes are collected."""

    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("name", name="name"),
        CheckConstraint("scale >= 2", name="scale"),
        CheckConstraint("channels IN (1, 3)", name="channels"),
        CheckConstraint("bank_size >= 1", name="bank_size"),
        CheckConstraint("k_picks >= 1 AND k_picks <= bank_size", name="k_picks"),
        CheckConstraint("raters_per_image >= 1", name="raters_per_image"),
        CheckConstraint("ensemble_size >= 1 AND ensemble_size <= bank_size", name="ensemble_size"),
        CheckConstraint("steps >= 1", name="steps"),
        CheckConstraint("seed >= 0", name="seed"),
        CheckConstraint("gold_rate >= 0 AND gold_rate <= 1", name="gold_rate"),
        CheckConstraint("revision_window_s >= 0", name="revision_window_s"),
        CheckConstraint("lease_s >= 1", name="lease_s"),
        CheckConstraint("max_lr_side >= 2", name="max_lr_side"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    model_name: Mapped[str] = mapped_column(String(200))
    scale: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer, default=1)
    bank_size: Mapped[int] = mapped_column(Integer)  # N samples per bank
    k_picks: Mapped[int] = mapped_column(Integer)  # k picks per rater and image
    raters_per_image: Mapped[int] = mapped_column(Integer)  # M raters per (non-gold) image: the maximum
    # adaptive overlap (migration 0005): an image is no longer served once resolved with at least min_raters
    # submissions; NULL: min = max (every image gets raters_per_image, as before). Checked by the service
    # (1 <= min_raters <= raters_per_image, 0 < resolve_threshold <= 1): a CHECK added to an existing SQLite
    # table would copy it, and its children cascade on delete (see migration 0002)
    min_raters: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resolve_threshold: Mapped[float] = mapped_column(Float, default=0.95, server_default="0.95")
    # a displayed bank that spans the hypotheses: banks draw pool_factor x bank_size samples and show bank_size
    pool_factor: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # the last project-level consensus fit (rater reliabilities), refreshed periodically (annotation.consensus)
    # loaded on first access only: the last fit's rater model (tens of KB of JSON) is read by the consensus alone
    consensus_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, deferred=True)
    ensemble_size: Mapped[int] = mapped_column(Integer)  # m most-voted samples averaged
    steps: Mapped[int] = mapped_column(Integer)
    mode: Mapped[SampleMode] = mapped_column(SAMPLE_MODE)
    scheduler: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(BigInteger)
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0)  # share of tasks that are gold items
    revision_window_s: Mapped[int] = mapped_column(Integer, default=600)
    lease_s: Mapped[int] = mapped_column(Integer, default=900)  # an assignment's lease, 15 min
    max_lr_side: Mapped[int] = mapped_column(Integer, default=128)
    # keywords the model is loaded with beyond its name (a diffusers pipeline's prompt); {} for most models.
    # The server default fills rows made before this column existed (migration 0002).
    engine_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    # what raters read above the grid (written by an admin); '' for rows made before migration 0004
    guidelines: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    images: Mapped[list[LRImage]] = relationship(back_populates="project", passive_deletes=True)


class LRImage(Base):
    """A low-resolution image to rate, stored as a canonical PNG; gold items carry a known label."""

    __tablename__ = "lr_images"
    __table_args__ = (
        UniqueConstraint("project_id", "content_sha256", name="project_content"),
        CheckConstraint("width >= 1 AND height >= 1", name="size"),
        CheckConstraint("channels IN (1, 3)", name="channels"),
        CheckConstraint("NOT is_gold OR label IS NOT NULL", name="gold_has_label"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    content_sha256: Mapped[str] = mapped_column(String(64))  # of the decoded pixels, not of the file
    source: Mapped[str] = mapped_column(Text)  # file name, zip member or "mnist:eval:<row>"
    png: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    hr_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # known HR image, if any
    label: Mapped[str | None] = mapped_column(Text, nullable=True)  # known reading (e.g. "5"), if any
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    # the calibrated consensus as of the last submission (annotation.consensus.update_image); never shown to raters
    consensus_reading: Mapped[str | None] = mapped_column(Text, nullable=True)
    consensus_probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="images")
    bank: Mapped[Bank | None] = relationship(back_populates="image", passive_deletes=True)


class Bank(Base):
    """The bank of one image. Visible (served, aggregated, exported) only while ``status == complete``."""

    __tablename__ = "banks"
    __table_args__ = (
        UniqueConstraint("image_id", name="image"),
        CheckConstraint("n >= 1", name="n"),
        CheckConstraint("steps >= 1", name="steps"),
        CheckConstraint("seed >= 0", name="seed"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_banks_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("lr_images.id", ondelete="CASCADE"))
    model_name: Mapped[str] = mapped_column(String(200))
    engine_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # eng.config when generated
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    n: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    steps: Mapped[int] = mapped_column(Integer)
    mode: Mapped[SampleMode] = mapped_column(SAMPLE_MODE)
    scheduler: Mapped[str] = mapped_column(String(32))
    status: Mapped[BankStatus] = mapped_column(BANK_STATUS, default=BankStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # engine time of the complete bank
    # the bank's evidence (migration 0005): the domain's reader ("digit-classifier", "plate-reader"; NULL: none,
    # "not available") and its reading counts over the samples, {"5": 41, "6": 23}; analysts only
    reader: Mapped[str | None] = mapped_column(String(64), nullable=True)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    image: Mapped[LRImage] = relationship(back_populates="bank")
    samples: Mapped[list[Sample]] = relationship(back_populates="bank", order_by="Sample.index",
                                                 passive_deletes=True)


class Sample(Base):
    """One HR candidate: uint8 PNG, its own seed (reproduces it alone) and its consistency figures."""

    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("bank_id", "index", name="bank_index"),
        UniqueConstraint("id", "bank_id", name="id_bank"),  # target of the picks' composite key
        CheckConstraint('"index" >= 0', name="index"),
        CheckConstraint("seed >= 0", name="seed"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    png: Mapped[bytes] = mapped_column(LargeBinary)
    lr_psnr: Mapped[float] = mapped_column(Float)  # dB, 100 = exact
    flow_consistency: Mapped[float | None] = mapped_column(Float, nullable=True)
    projection_residual: Mapped[float | None] = mapped_column(Float, nullable=True)
    reading: Mapped[str | None] = mapped_column(Text, nullable=True)  # the reader's reading (NULL: no reader)
    reading_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)  # its probability, 0..1
    pool_share: Mapped[float | None] = mapped_column(Float, nullable=True)  # share of the pool it stands for

    bank: Mapped[Bank] = relationship(back_populates="samples")


class Rater(Base):
    """An account. ``secret_hash`` is ``scrypt$n$r$p$salt$hash`` (never the secret); NULL cannot log in."""

    __tablename__ = "raters"
    __table_args__ = (UniqueConstraint("name", name="name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(ROLE, default=Role.rater)
    secret_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # sign-in sessions: each remembers the epoch it began in; a deactivation or a new password bumps the epoch,
    # which ends every older session at once (the app checks it on each request)
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # a generated (one-time) password: until it is changed the account may do nothing else
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RaterExclusion(Base):
    """An analyst's decision to leave a rater's votes out of a project's aggregation and exports."""

    __tablename__ = "rater_exclusions"
    __table_args__ = (UniqueConstraint("project_id", "rater_id", name="project_rater"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    excluded_by: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="RESTRICT"))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Assignment(Base):
    """Rater x image. While served it is a lease that holds one of the image's slots; ``sample_order`` is the
    per-rater shuffled order of sample indices the rater was shown. The id is the submission's idempotency key."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("rater_id", "image_id", name="rater_image"),
        UniqueConstraint("image_id", "slot", name="image_slot"),
        UniqueConstraint("id", "bank_id", name="id_bank"),  # target of the picks' composite key
        CheckConstraint("slot IS NULL OR slot >= 1", name="slot"),
        CheckConstraint("revisions >= 0", name="revisions"),
        Index("ix_assignments_project_status", "project_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("lr_images.id", ondelete="CASCADE"))
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"))
    status: Mapped[AssignmentStatus] = mapped_column(ASSIGNMENT_STATUS, default=AssignmentStatus.served)
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1..raters_per_image; NULL: none held
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    sample_order: Mapped[list[Any]] = mapped_column(JSON)
    served_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    skipped_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    revised_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revisions: Mapped[int] = mapped_column(Integer, default=0)
    seconds_on_task: Mapped[float | None] = mapped_column(Float, nullable=True)

    picks: Mapped[list[Pick]] = relationship(primaryjoin="Assignment.id == foreign(Pick.assignment_id)",
                                             order_by="Pick.rank", viewonly=True)
    reading: Mapped[Reading | None] = relationship(back_populates="assignment", passive_deletes=True)


class Pick(Base):
    """One of a rater's top-k choices. The composite keys make a pick from another bank impossible."""

    __tablename__ = "picks"
    __table_args__ = (
        UniqueConstraint("assignment_id", "rank", name="assignment_rank"),
        UniqueConstraint("assignment_id", "sample_id", name="assignment_sample"),
        CheckConstraint("rank >= 1", name="rank"),
        ForeignKeyConstraint(["assignment_id", "bank_id"], ["assignments.id", "assignments.bank_id"],
                             name="fk_picks_assignment_bank", ondelete="CASCADE"),
        ForeignKeyConstraint(["sample_id", "bank_id"], ["samples.id", "samples.bank_id"],
                             name="fk_picks_sample_bank", ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(Integer)
    bank_id: Mapped[int] = mapped_column(Integer)
    sample_id: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)  # 1 = best


class Reading(Base):
    """What the rater reads in the image (free text, stored verbatim)."""

    __tablename__ = "readings"
    __table_args__ = (UniqueConstraint("assignment_id", name="assignment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)

    assignment: Mapped[Assignment] = relationship(back_populates="reading")


class Ensemble(Base):
    """The pixel mean of the most-voted samples of a bank, with its consistency figures (history: newest wins)."""

    __tablename__ = "ensembles"
    __table_args__ = (
        CheckConstraint("n_samples >= 1", name="n_samples"),
        CheckConstraint("n_submissions >= 1", name="n_submissions"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("banks.id", ondelete="CASCADE"), index=True)
    sample_indices: Mapped[list[Any]] = mapped_column(JSON)
    weights: Mapped[list[Any]] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(32))  # "pixel-mean" or "vote-weighted"
    png: Mapped[bytes] = mapped_column(LargeBinary)
    n_samples: Mapped[int] = mapped_column(Integer)
    n_submissions: Mapped[int] = mapped_column(Integer)  # submissions (after exclusions) the votes came from
    lr_psnr: Mapped[float] = mapped_column(Float)
    lr_psnr_before: Mapped[float] = mapped_column(Float)
    consistency_mse: Mapped[float] = mapped_column(Float)
    flow_consistency: Mapped[float | None] = mapped_column(Float, nullable=True)
    reprojected: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuditLog(Base):
    """Append-only record of every state change (triggers refuse UPDATE and DELETE)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("raters.id", ondelete="RESTRICT"), nullable=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"),
                                                   nullable=True)
    action: Mapped[str] = mapped_column(String(64))  # e.g. "assignment.submitted"
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# ---- the audit log's append-only triggers (also created by the first migration) -----------------------------
AUDIT_TRIGGERS_SQLITE = [
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
]
AUDIT_TRIGGERS_POSTGRESQL = [
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
]
AUDIT_TRIGGERS_DROP_POSTGRESQL = [
    "DROP TRIGGER IF EXISTS audit_log_no_update ON audit_log",
    "DROP FUNCTION IF EXISTS audit_log_append_only()",
]

for _sql in AUDIT_TRIGGERS_SQLITE:
    event.listen(AuditLog.__table__, "after_create", DDL(_sql).execute_if(dialect="sqlite"))
for _sql in AUDIT_TRIGGERS_POSTGRESQL:
    event.listen(AuditLog.__table__, "after_create", DDL(_sql).execute_if(dialect="postgresql"))
for _sql in AUDIT_TRIGGERS_DROP_POSTGRESQL:
    event.listen(AuditLog.__table__, "before_drop", DDL(_sql).execute_if(dialect="postgresql"))
