"""Alembic migrations of the annotation store, run programmatically (no alembic.ini needed).

    from db.migrations import upgrade
    upgrade("sqlite:///annotation.sqlite")      # or any SQLAlchemy URL; default: db.engine.default_url()
    create_schema(engine)                        # tests: create_all from the models, stamped as migrated

This package depends on ``db.engine`` (URLs, engines) and ``db.models``, never the other way round.

The command line works too: ``alembic -c db/migrations/alembic.ini -x db_url=URL upgrade head``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from ..engine import default_url, make_engine
from ..models import Base

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", (url or default_url()).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head", *, engine: Engine | None = None) -> None:
    """Bring the database at ``url`` (or the given engine's, e.g. an in-memory one) to ``revision``."""
    cfg = alembic_config(url if engine is None else engine.url.render_as_string(hide_password=False))
    if engine is not None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    else:
        command.upgrade(cfg, revision)


def stamp_head(engine: Engine) -> None:
    """Record that ``engine``'s database already has the newest schema (made by ``create_all``)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.stamp(cfg, "head")


def create_schema(engine: Engine) -> None:
    """Create every table directly from the models and stamp the newest migration (tests, throwaway databases:
    faster than migrating). Real databases use :func:`upgrade`, which gives the same schema."""
    Base.metadata.create_all(engine)
    stamp_head(engine)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url_or_engine: str | Engine) -> str | None:
    """The revision a database is at (None: never migrated)."""
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
