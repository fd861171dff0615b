"""Index the called number of the SIP message log.

A search by number matches the calling or the called number; with only ``from_tn``
indexed, the ``to_tn`` half of that OR scanned the whole log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_sip_message_to_tn"), "sip_message", ["to_tn"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sip_message_to_tn"), table_name="sip_message")
