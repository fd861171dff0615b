"""Signing routing: one default signer, removable entries, unsigned calls in the log.

- ``certificate_entry``: a unique partial index keeps at most one default signer; an
  install where entries are active but none is the default (the state every install
  was left in before entries could be routed) gets its oldest enabled entry with an
  active certificate as the default, as a new install would.
- ``certificate.entry_id`` may be NULL: a removed entry's published chains stay on the
  STI-CR until they expire.
- ``sip_message.action`` also takes ``not-signed`` (a call the STI-AS could not sign).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 18:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OLD_ACTIONS = ("signed", "verified")
_NEW_ACTIONS = (*_OLD_ACTIONS, "not-signed")


def _action(values: Sequence[str]) -> sa.Enum:
    return sa.Enum(*values, name="action", native_enum=False, create_constraint=True, length=16)


_FIRST_ACTIVE_ENTRY = """
UPDATE certificate_entry SET is_default_signer = :yes
WHERE id = (
    SELECT MIN(e.id) FROM certificate_entry e
    JOIN certificate c ON c.entry_id = e.id AND c.state = 'active'
    WHERE e.enabled = :yes
)
AND NOT EXISTS (SELECT 1 FROM certificate_entry WHERE is_default_signer = :yes)
"""


def upgrade() -> None:
    op.get_bind().execute(sa.text(_FIRST_ACTIVE_ENTRY), {"yes": True})
    op.create_index(
        "uq_certificate_entry_one_default",
        "certificate_entry",
        ["is_default_signer"],
        unique=True,
        sqlite_where=sa.text("is_default_signer"),
        postgresql_where=sa.text("is_default_signer"),
    )
    with op.batch_alter_table("certificate") as batch:
        batch.alter_column("entry_id", existing_type=_ID, nullable=True)
    with op.batch_alter_table("sip_message") as batch:
        batch.alter_column(
            "action", existing_type=_action(_OLD_ACTIONS), type_=_action(_NEW_ACTIONS)
        )


def downgrade() -> None:
    op.execute("UPDATE sip_message SET action = 'signed' WHERE action = 'not-signed'")
    with op.batch_alter_table("sip_message") as batch:
        batch.alter_column(
            "action", existing_type=_action(_NEW_ACTIONS), type_=_action(_OLD_ACTIONS)
        )
    op.execute("DELETE FROM certificate WHERE entry_id IS NULL")
    with op.batch_alter_table("certificate") as batch:
        batch.alter_column("entry_id", existing_type=_ID, nullable=False)
    op.drop_index("uq_certificate_entry_one_default", table_name="certificate_entry")
