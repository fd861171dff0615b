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


_COLUMNS = (
    ("rcd_name", 256),
    ("rcd_icon_url", 2048),
    ("rcd_icon_digest", 128),
)

# Plain ALTER TABLE, not batch mode: on SQLite a batch copies the table and drops the
# old one, and with foreign keys on that drop nulls every certificate's entry_id.
# SQLite (>= 3.35) adds and drops plain columns in place.


def upgrade() -> None:
    for name, length in _COLUMNS:
        op.add_column("certificate_entry", sa.Column(name, sa.String(length=length)))


def downgrade() -> None:
    for name, _ in reversed(_COLUMNS):
        op.drop_column("certificate_entry", name)
