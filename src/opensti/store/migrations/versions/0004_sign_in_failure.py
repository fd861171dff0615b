"""Keep failed sign-in counters in the database, so the limit holds across nodes.

``sign_in_failure`` has one row per user name or client address (``kind`` + ``key``)
with its failure count and lock deadline, indexed by the deadline for pruning. Types
are spelled out, as in 0001.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 10:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sign_in_failure",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name=op.f("pk_sign_in_failure")),
    )
    op.create_index(
        op.f("ix_sign_in_failure_locked_until"), "sign_in_failure", ["locked_until"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sign_in_failure_locked_until"), table_name="sign_in_failure")
    op.drop_table("sign_in_failure")
