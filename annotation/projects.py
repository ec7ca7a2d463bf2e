"""Projects: which model makes the banks (N samples, steps, mode, scheduler, seed, the model's own options such
as a diffusers pipeline's prompt, a pool to choose the shown samples from) and how votes are collected (k picks per
rater, raters_per_image M (the maximum; ``min_raters`` and ``resolve_threshold`` for adaptive overlap),
ensemble_size m, gold rate, lease, revision window), and which LR images are accepted (``max_lr_side``).

A project names its model by a string that loads it again anywhere (the app's worker, ``python -m annotation
generate`` on another machine): a shipped name, or ``diffusers:<absolute folder>`` for a local diffusers pipeline
(:func:`model_spec`, :func:`load_model`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Project, SampleMode
from sr_engine import MODES, DiffusersEngine, FlowEngine, SREngine, load_engine
from sr_engine.plates import ALPHABET as PLATE_ALPHABET

from .accounts import check_text, require_role
from .audit import record
from .errors import Conflict, InvalidInput, NotFound
from .positions import UNREADABLE
from .text import check_alphabet, normalize_text

SCHEDULERS = ("ddim", "dpmsolver", "ddpm", "euler")  # every engine's; each engine takes some (engine_schedulers)
DIFFUSERS_PREFIX = "diffusers:"
MAX_PROMPT = 1000
MAX_PROJECT_NAME = 200
MAX_READING = 500
# the characters a reading may hold, by what a model was trained on (its name's first part: "mnist-x4",
# "plates-x4", a checkpoint file named so); "?" marks a character a rater cannot read. Other models (a diffusers
# pipeline, a checkpoint of another name) take any visible text.
READING_ALPHABETS: dict[str, str] = {"mnist": "0123456789" + UNREADABLE, "plates": PLATE_ALPHABET + UNREADABLE}
MAX_GUIDELINES = 10_000


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
    max_lr_side: int = 128  # larger LR images are refused on import (at most the engine's own limit)
    engine_options: dict[str, Any] = field(default_factory=dict)  # load keywords beyond the name: {"prompt": ...}
    # adaptive overlap: raters_per_image is the maximum; an image resolved with at least min_raters
    # submissions is no longer served (None: min = max, every image gets raters_per_image)
    min_raters: int | None = None
    resolve_threshold: float = 0.95  # resolved: the calibrated consensus probability reaches this, (0, 1]
    pool_factor: int = 1  # banks draw pool_factor x bank_size samples and show a subset spanning them (1: no pool)
    guidelines: str = ""  # shown to raters above the grid (plain text); an admin may edit it later


def _int(value: object, what: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise InvalidInput(f"{what} must be in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
    return value


def model_domain(model_name: str) -> str:
    """What a model was trained on, from its name as a project stores it: "mnist" for ``mnist-x4`` or
    ``/ckpt/mnist-x8.pt``, "plates" for ``plates-x4``, "" for anything else (a diffusers pipeline included)."""
    name = str(model_name or "")
    if name.startswith(DIFFUSERS_PREFIX):
        return ""
    first = Path(name).stem.split("-")[0].lower()
    return first if first in READING_ALPHABETS else ""


def reading_alphabet(model_name: str) -> str | None:
    """The characters a reading of this model's images may hold (:data:`READING_ALPHABETS`), None for any."""
    return READING_ALPHABETS.get(model_domain(model_name))


def normalize_reading(text: object, model_name: str, *, what: str = "reading", max_len: int = MAX_READING) -> str:
    """A rater's reading (or an image's known label) in its one canonical form: NFKC, stripped, invisible and
    direction-changing characters refused (:func:`annotation.text.normalize_text`), upper case where the alphabet
    has no lower case (plates), and refused, naming the characters, outside the project's alphabet."""
    out = normalize_text(text, what=what, max_len=max_len)
    alphabet = reading_alphabet(model_name)
    if alphabet is not None:
        if any(c.isupper() for c in alphabet) and not any(c.islower() for c in alphabet):
            out = out.upper()  # plates: "8b" is "8B"
        check_alphabet(out, alphabet, what=what)
    return out


def normalize_project_name(name: object) -> str:
    """A project's name in its canonical form (NFKC, stripped, no invisible characters)."""
    return normalize_text(name, what="project name", max_len=MAX_PROJECT_NAME)


def _name_key(name: str) -> str:
    """Two project names that differ only in width, case or invisible characters collide (casefolded NFKC)."""
    return name.casefold()


def validate_settings(s: ProjectSettings) -> None:
    normalize_project_name(s.name)
    check_text(s.model_name, "model name", 200)
    _int(s.scale, "scale", 2, 64)
    if s.channels not in (1, 3):
        raise InvalidInput(f"channels must be 1 or 3, got {s.channels!r}")
    _int(s.bank_size, "bank_size", 1, 4096)
    _int(s.k_picks, "k_picks", 1, s.bank_size)
    _int(s.raters_per_image, "raters_per_image", 1, 10_000)
    _int(s.pool_factor, "pool_factor", 1, 16)
    if s.min_raters is not None:
        _int(s.min_raters, "min_raters", 1, s.raters_per_image)
    if (isinstance(s.resolve_threshold, bool) or not isinstance(s.resolve_threshold, (int, float))
            or not 0 < s.resolve_threshold <= 1):
        raise InvalidInput(f"resolve_threshold must be a number in (0, 1], got {s.resolve_threshold!r}")
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
    _check_options(s.engine_options)
    _check_guidelines(s.guidelines)


def set_guidelines(session: Session, actor_id: int, project_id: int, text: str) -> Project:
    """Replace a project's guidelines for raters (admins only; audited with the old text)."""
    require_role(session, actor_id, "admin")
    project = get_project(session, project_id)
    text = "" if text is None else str(text).strip()
    _check_guidelines(text)
    old, project.guidelines = project.guidelines, text
    record(session, "project.guidelines", "project", project.id, actor_id=actor_id, project_id=project.id,
           old=old, new=text)
    return project


def _check_guidelines(text: object) -> None:
    """Plain text for raters, several lines allowed; empty means none."""
    if text != "":
        check_text(text, "guidelines", MAX_GUIDELINES, allow_newlines=True)


def _check_options(options: object) -> None:
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise InvalidInput(f"engine_options must be a dict with string keys, got {options!r}")
    for k, v in options.items():
        if not isinstance(v, (str, int, float, bool)) or (isinstance(v, float) and v != v):  # NaN: not JSON
            raise InvalidInput(f"engine option {k!r} must be a string, a number or a boolean, got {v!r}")
    if "prompt" in options:
        check_text(options["prompt"], "prompt", MAX_PROMPT)
    if len(json.dumps(options)) > 4000:
        raise InvalidInput("engine_options are longer than 4000 characters as JSON")


def engine_schedulers(engine: SREngine) -> tuple[str, ...]:
    """The schedulers an engine takes (``SREngine.schedulers``)."""
    return tuple(engine.schedulers)


def check_engine_settings(engine: SREngine, s: ProjectSettings) -> None:
    """Refuse settings the engine cannot honour, before any bank is queued: a mode or scheduler it does not
    have (flow models: strict, flow, prior; diffusers pipelines: strict, guided, free), an option it does not
    take (a prompt for a pipeline without one), an LR size limit above its own."""
    name = engine.name
    if s.mode not in engine.modes:
        raise InvalidInput(f"mode {s.mode!r} is not available for model {name!r}; it supports "
                           f"{', '.join(engine.modes)}")
    schedulers = engine_schedulers(engine)
    if s.scheduler not in schedulers:
        raise InvalidInput(f"scheduler {s.scheduler!r} is not available for model {name!r}; it supports "
                           f"{', '.join(schedulers)}")
    takes = tuple(engine.option_names)
    unknown = sorted(set(s.engine_options) - set(takes))
    if unknown:
        what = "prompt" if unknown == ["prompt"] else f"option(s) {', '.join(unknown)}"
        raise InvalidInput(f"model {name!r} takes no {what}; it takes {', '.join(takes) or 'no options'}")
    limit = engine.max_lr_side
    if s.max_lr_side > int(limit):
        raise InvalidInput(f"max_lr_side {s.max_lr_side} is above what model {name!r} accepts ({limit} pixels "
                           "a side)")


def create_project(session: Session, settings: ProjectSettings, *, actor_id: int | None = None,
                   engine: SREngine | None = None) -> Project:
    """A new project (``actor_id``, when given, must be an admin's). With ``engine`` (the loaded model) the
    settings are also checked against what it supports (:func:`check_engine_settings`)."""
    if actor_id is not None:
        require_role(session, actor_id, "admin")
    validate_settings(settings)
    settings = replace(settings, name=normalize_project_name(settings.name))
    if engine is not None:
        check_engine_settings(engine, settings)
    key = _name_key(settings.name)
    for existing in session.scalars(select(Project.name)):
        try:
            same = _name_key(normalize_project_name(existing)) == key
        except InvalidInput:  # a name stored before names were normalised
            same = existing == settings.name
        if same:
            raise Conflict(f"a project named {existing!r} already exists (names that differ only in width, case "
                           "or invisible characters are one name)")
    values = asdict(settings)
    values["mode"] = SampleMode(settings.mode)
    values["gold_rate"] = float(settings.gold_rate)
    values["resolve_threshold"] = float(settings.resolve_threshold)
    values["engine_options"] = dict(settings.engine_options)
    project = Project(**values)
    session.add(project)
    session.flush()
    record(session, "project.created", "project", project.id, actor_id=actor_id, project_id=project.id,
           settings=asdict(settings))
    return project


def settings_for_engine(engine: SREngine, name: str, **overrides) -> ProjectSettings:
    """Settings whose model name, scale and channels come from an engine (``sr_engine.load_engine(...)``)."""
    return ProjectSettings(name=name, model_name=engine.name, scale=int(engine.scale),
                           channels=int(engine.channels), **overrides)


def model_spec(model: str) -> str:
    """The string a project stores for a model: a shipped name or checkpoint path as given; a diffusers folder
    as ``diffusers:<absolute path>`` (``diffusers:./my-sr/`` and ``diffusers:/abs/my-sr`` are one model)."""
    model = str(model or "").strip()
    if not model.startswith(DIFFUSERS_PREFIX):
        return model
    folder = model[len(DIFFUSERS_PREFIX):].strip()
    if not folder:
        raise InvalidInput("give the pipeline's folder: diffusers:/path/to/pipeline")
    return DIFFUSERS_PREFIX + str(Path(folder).expanduser().resolve())


def load_model(model: str, **engine_kwargs: Any) -> SREngine:
    """``sr_engine.load_engine`` for a project's model string. A diffusers pipeline is named by its
    :func:`model_spec`, so the name a project stores (``engine.name``) loads the same folder again."""
    spec = model_spec(model)
    if spec.startswith(DIFFUSERS_PREFIX):
        return load_engine(spec, name=spec, **engine_kwargs)
    return load_engine(spec, **engine_kwargs)


def model_modes(model: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(modes, schedulers) of a model string, without loading its weights: a diffusers pipeline's (strict,
    guided, free) or a flow model's (strict, flow, prior). Creating the project checks them on the engine."""
    if str(model or "").strip().startswith(DIFFUSERS_PREFIX):
        return DiffusersEngine.modes, DiffusersEngine.schedulers
    return FlowEngine.modes, FlowEngine.schedulers


def get_project(session: Session, project: int | str) -> Project:
    """A project by id or by name; :class:`~annotation.errors.NotFound` if there is none. The one lookup every
    service uses."""
    if isinstance(project, str):
        try:
            name = normalize_project_name(project)
        except InvalidInput:
            name = project
        row = session.scalar(select(Project).where(Project.name == name))
    elif isinstance(project, int) and not isinstance(project, bool):
        row = session.get(Project, project)
    else:
        row = None
    if row is None:
        raise NotFound(f"unknown project {'id ' if isinstance(project, int) else ''}{project!r}")
    return row


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))
