"""Trustworthy resolution: the bank's evidence, the calibrated consensus per image, adaptive overlap.

- ``banks.reader`` / ``banks.evidence``: the domain's reader and its reading counts over the bank;
- ``samples.reading`` / ``samples.reading_confidence``: each sample's reading and its probability;
- ``lr_images.consensus_reading`` / ``consensus_probability`` / ``resolved``: the calibrated consensus as of the
  last submission;
- ``projects.min_raters`` / ``resolve_threshold`` / ``consensus_state``: adaptive overlap and the last
  project-level fit;
- ``projects.pool_factor`` / ``samples.pool_share``: a displayed bank chosen from a larger pool, and the share of
  the pool each shown sample stands for.

Plain ``ADD COLUMN``s with constant defaults (nullable or with a server default), so SQLite copies no table
(see 0002). Re-chained after main's 0003 (account sessions) and 0004 (project guidelines).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = [
    ("banks", sa.Column("reader", sa.String(64), nullable=True)),
    ("banks", sa.Column("evidence", sa.JSON(), nullable=True)),
    ("samples", sa.Column("reading", sa.Text(), nullable=True)),
    ("samples", sa.Column("reading_confidence", sa.Float(), nullable=True)),
    ("samples", sa.Column("pool_share", sa.Float(), nullable=True)),
    ("lr_images", sa.Column("consensus_reading", sa.Text(), nullable=True)),
    ("lr_images", sa.Column("consensus_probability", sa.Float(), nullable=True)),
    ("lr_images", sa.Column("resolved", sa.Boolean(), server_default=sa.false(), nullable=False)),
    ("projects", sa.Column("min_raters", sa.Integer(), nullable=True)),
    ("projects", sa.Column("resolve_threshold", sa.Float(), server_default="0.95", nullable=False)),
    ("projects", sa.Column("consensus_state", sa.JSON(), nullable=True)),
    ("projects", sa.Column("pool_factor", sa.Integer(), server_default="1", nullable=False)),
]


def upgrade() -> None:
    for table, column in COLUMNS:
        op.add_column(table, column)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column in reversed(COLUMNS):
        if sqlite:  # SQLite >= 3.35 drops a column in place; batch mode would copy the table (see 0002)
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column.name}")
        else:
            op.drop_column(table, column.name)
