"""Per entry, the Rich Call Data to assert: display name and logo (RFC 9795).

``rcd_name`` becomes ``rcd.nam`` and ``rcd_icon_url`` ``rcd.icn`` in every SHAKEN
PASSporT the entry signs; ``rcd_icon_digest`` is the logo's ``rcdi`` digest, computed
when the logo was fetched (at set time, then on refresh), so signing never fetches.

Revision ID: 0009_entry_rcd
Revises: 0008
Create Date: 2026-12-04 21:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_entry_rcd"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certificate_entry") as batch:
        batch.add_column(sa.Column("rcd_name", sa.String(length=256), nullable=True))
        batch.add_column(sa.Column("rcd_icon_url", sa.String(length=2048), nullable=True))
        batch.add_column(sa.Column("rcd_icon_digest", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificate_entry") as batch:
        batch.drop_column("rcd_icon_digest")
        batch.drop_column("rcd_icon_url")
        batch.drop_column("rcd_name")
