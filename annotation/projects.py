"""Projects: which model makes the banks (N samples, steps, mode, scheduler, seed) and how votes are collected
(k picks per rater, raters_per_image M, ensemble_size m, gold rate, lease, revision window)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Project, SampleMode
from sr_engine import MODES

from .accounts import check_text, require_role
from .audit import record
from .errors import Conflict, InvalidInput, NotFound

SCHEDULERS = ("ddim", "dpmsolver", "ddpm")


@dataclass
class ProjectSettings:
    name: str
    model_name: str  # a name load_engine knows (list_models()) or the engine's own name
    scale: int
    channels: int = 1  # 1 (grey) or 3 (RGB): what the model takes
    bank_size: int = 64  # N samples per bank
    k_picks: int = 3  # k picks per rater and image, ranked 1..k
    raters_per_image: int = 5  # M raters per image (gold items: every rater once)
    ensemble_size: int = 3  # m most-voted samples averaged into the ensemble
    steps: int = 8  # sampler steps
    mode: str = "strict"  # one of sr_engine.MODES the engine supports
    scheduler: str = "ddim"
    seed: int = 0  # the project's seed; each image's bank seed is drawn from (seed, image id)
    gold_rate: float = 0.0  # share of a rater's tasks that are gold items (known label), 0..1
    revision_window_s: int = 600  # how long after submitting a rater may revise
    lease_s: int = 900  # an assignment's lease (15 minutes)
    max_lr_side: int = 128  # larger LR images are refused on import


def _int(value: object, what: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise InvalidInput(f"{what} must be in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
    return value


def validate_settings(s: ProjectSettings) -> None:
    check_text(s.name, "project name", 200)
    check_text(s.model_name, "model name", 200)
    _int(s.scale, "scale", 2, 64)
    if s.channels not in (1, 3):
        raise InvalidInput(f"channels must be 1 or 3, got {s.channels!r}")
    _int(s.bank_size, "bank_size", 1, 4096)
    _int(s.k_picks, "k_picks", 1, s.bank_size)
    _int(s.raters_per_image, "raters_per_image", 1, 10_000)
    _int(s.ensemble_size, "ensemble_size", 1, s.bank_size)
    _int(s.steps, "steps", 1, 10_000)
    _int(s.seed, "seed", 0, 2**63 - 1)
    _int(s.revision_window_s, "revision_window_s", 0)
    _int(s.lease_s, "lease_s", 1)
    _int(s.max_lr_side, "max_lr_side", 2, 4096)
    if s.mode not in MODES:
        raise InvalidInput(f"mode must be one of {MODES}, got {s.mode!r}")
    if s.scheduler not in SCHEDULERS:
        raise InvalidInput(f"scheduler must be one of {SCHEDULERS}, got {s.scheduler!r}")
    if isinstance(s.gold_rate, bool) or not isinstance(s.gold_rate, (int, float)) or not 0 <= s.gold_rate <= 1:
        raise InvalidInput(f"gold_rate must be a number in [0, 1], got {s.gold_rate!r}")


def create_project(session: Session, settings: ProjectSettings, *, actor_id: int | None = None) -> Project:
    """A new project (``actor_id``, when given, must be an admin's)."""
    validate_settings(settings)
    if actor_id is not None:
        require_role(session, actor_id, "admin")
    if session.scalar(select(Project.id).where(Project.name == settings.name)) is not None:
        raise Conflict(f"a project named {settings.name!r} already exists")
    values = asdict(settings)
    values["mode"] = SampleMode(settings.mode)
    values["gold_rate"] = float(settings.gold_rate)
    project = Project(**values)
    session.add(project)
    session.flush()
    record(session, "project.created", "project", project.id, actor_id=actor_id, project_id=project.id,
           settings=asdict(settings))
    return project


def settings_for_engine(engine, name: str, **overrides) -> ProjectSettings:
    """Settings whose model name, scale and channels come from an engine (``sr_engine.load_engine(...)``)."""
    return ProjectSettings(name=name, model_name=engine.name, scale=int(engine.scale),
                           channels=int(getattr(engine, "channels", 1)), **overrides)


def get_project(session: Session, project: int | str) -> Project:
    """A project by id or by name."""
    if isinstance(project, str):
        row = session.scalar(select(Project).where(Project.name == project))
    elif isinstance(project, int) and not isinstance(project, bool):
        row = session.get(Project, project)
    else:
        row = None
    if row is None:
        raise NotFound(f"unknown project {project!r}")
    return row


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))
