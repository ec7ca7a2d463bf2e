"""Accounts remember what their sign-in sessions need: ``raters.session_epoch`` (a deactivation or a
new password bumps it, which ends every session begun before), ``raters.must_change_password`` (a generated
one-time password must be replaced at the first sign-in) and ``raters.last_sign_in_at``.

Plain ``ADD COLUMN``s with constant defaults, so SQLite does not copy the table (``raters`` is referenced with
``ON DELETE CASCADE`` by assignments and exclusions). The first admin of an existing database keeps the password it
has: nothing here marks it as one-time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("session_epoch", "must_change_password", "last_sign_in_at")


def upgrade() -> None:
    op.add_column("raters", sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False))
    op.add_column("raters", sa.Column("must_change_password", sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
    op.add_column("raters", sa.Column("last_sign_in_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    for name in reversed(COLUMNS):
        if op.get_bind().dialect.name == "sqlite":  # in place (SQLite >= 3.35); batch mode would copy the table
            op.execute(f"ALTER TABLE raters DROP COLUMN {name}")
        else:
            op.drop_column("raters", name)
