"""The call log keeps a verified call's Rich Call Data: the caller's name and logo URL.

Filled only when the rcd claims verified (RFC 9795: signature, rcdi digests and the
certificate's JWT Claim Constraints); NULL otherwise, so the UI never shows a name or
logo it could not vouch for.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sip_message") as batch:
        batch.add_column(sa.Column("rcd_name", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("rcd_icon", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sip_message") as batch:
        batch.drop_column("rcd_icon")
        batch.drop_column("rcd_name")
