"""The ``signer`` role (API tokens for the STIR API) and server-side web sessions.

``role`` is a checked string on ``user_account`` and ``api_token``: its CHECK
constraint is rebuilt with the new value (batch mode, so SQLite recreates the
tables). ``web_session`` keeps one row per signed-in browser, by the SHA-256 of the
random id in its cookie. Types are spelled out, as in 0001.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_OLD_ROLES = ("admin", "operator", "read-only")
_NEW_ROLES = (*_OLD_ROLES, "signer")
_TABLES = ("user_account", "api_token")


def _role(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name="role", native_enum=False, create_constraint=True, length=16)


def _set_roles(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "role", existing_type=_role(old), type_=_role(new), existing_nullable=False
            )


def upgrade() -> None:
    _set_roles(_OLD_ROLES, _NEW_ROLES)
    op.create_table(
        "web_session",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_web_session_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_web_session")),
    )
    op.create_index(op.f("ix_web_session_user_id"), "web_session", ["user_id"], unique=False)
    op.create_index(op.f("ix_web_session_expires_at"), "web_session", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_web_session_expires_at"), table_name="web_session")
    op.drop_index(op.f("ix_web_session_user_id"), table_name="web_session")
    op.drop_table("web_session")
    op.execute(sa.text("DELETE FROM api_token WHERE role = 'signer'"))
    op.execute(sa.text("UPDATE user_account SET role = 'read-only' WHERE role = 'signer'"))
    _set_roles(_NEW_ROLES, _OLD_ROLES)
