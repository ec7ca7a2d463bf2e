"""Projects carry guidelines for their raters, written by an admin and shown above the rater's grid, as
``projects.guidelines`` (text, ``''`` for every existing project).

A plain ``ADD COLUMN`` with a constant default on every backend, so SQLite does not copy the table (a copy would
drop and re-create ``projects``, which its children reference with ``ON DELETE CASCADE``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("guidelines", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite >= 3.35 drops a column in place; alembic's batch mode would copy the table (see above)
        op.execute("ALTER TABLE projects DROP COLUMN guidelines")
    else:
        op.drop_column("projects", "guidelines")
