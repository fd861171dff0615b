"""Keep the certificate that each verified call was checked against.

The log stored only the x5u of a verified call, so nobody could tell afterwards who
signed it. ``remote_certificate`` holds each certificate once (unique fingerprint);
``sip_message.remote_certificate_id`` points at it. Types are spelled out, as in 0001.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 15:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "remote_certificate",
        sa.Column("id", _ID, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("spc", sa.String(length=32), nullable=True),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("not_before", _TIME, nullable=False),
        sa.Column("not_after", _TIME, nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("first_seen", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_certificate")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_remote_certificate_fingerprint")),
    )
    with op.batch_alter_table("sip_message") as batch:
        batch.add_column(sa.Column("remote_certificate_id", _ID, nullable=True))
        batch.create_foreign_key(
            op.f("fk_sip_message_remote_certificate_id_remote_certificate"),
            "remote_certificate",
            ["remote_certificate_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(
            op.f("ix_sip_message_remote_certificate_id"), ["remote_certificate_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sip_message") as batch:
        batch.drop_index(op.f("ix_sip_message_remote_certificate_id"))
        batch.drop_constraint(
            op.f("fk_sip_message_remote_certificate_id_remote_certificate"), type_="foreignkey"
        )
        batch.drop_column("remote_certificate_id")
    op.drop_table("remote_certificate")
