"""Index the SIP message log on ``(at, id)``, its page order.

Pages are keyset pages newest first on ``(at, id)``. With ``at`` alone indexed, a page
deep in the log read every newer row and filtered it out (and PostgreSQL sorted the
ties on ``id``); with the pair indexed, both databases start at the cursor.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 16:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_sip_message_at_id", "sip_message", ["at", "id"], unique=False)
    op.drop_index(op.f("ix_sip_message_at"), table_name="sip_message")


def downgrade() -> None:
    op.create_index(op.f("ix_sip_message_at"), "sip_message", ["at"], unique=False)
    op.drop_index("ix_sip_message_at_id", table_name="sip_message")
