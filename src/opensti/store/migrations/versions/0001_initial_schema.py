"""Initial schema: every table of opensti.store._models.

Column types are spelled out (no opensti imports) so this revision stays as it was
whatever the models become.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 12:17:43.259168
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "certificate_authority",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "known", "custom", name="kind", native_enum=False, create_constraint=True, length=16
            ),
            nullable=False,
        ),
        sa.Column("directory_url", sa.String(length=2048), nullable=False),
        sa.Column("staging_directory_url", sa.String(length=2048), nullable=True),
        sa.Column("needs_eab", sa.Boolean(), nullable=False),
        sa.Column("terms_url", sa.String(length=2048), nullable=True),
        sa.Column("identifier_encoding", sa.String(length=16), nullable=False),
        sa.Column("tkauth_field", sa.String(length=16), nullable=False),
        sa.Column("fingerprint_algorithm", sa.String(length=16), nullable=False),
        sa.Column("cert_key_is_account_key", sa.Boolean(), nullable=False),
        sa.Column("honours_validity", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_authority")),
        sa.UniqueConstraint("name", name=op.f("uq_certificate_authority_name")),
    )
    op.create_table(
        "setting",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("value_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_setting")),
    )
    op.create_table(
        "stipa_account",
        sa.Column("id", _ID, nullable=False),
        sa.Column("account_id", sa.String(length=16), nullable=False),
        sa.Column(
            "environment",
            sa.Enum(
                "production",
                "staging",
                name="environment",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("password_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("base_url", sa.String(length=2048), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stipa_account")),
        sa.UniqueConstraint(
            "account_id", "environment", name=op.f("uq_stipa_account_account_id_environment")
        ),
    )
    op.create_table(
        "user_account",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin",
                "operator",
                "read-only",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
        sa.UniqueConstraint("name", name=op.f("uq_user_account_name")),
    )
    op.create_table(
        "acme_account",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ca_id", _ID, nullable=False),
        sa.Column("staging", sa.Boolean(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("account_url", sa.String(length=2048), nullable=True),
        sa.Column("key_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("eab_kid", sa.String(length=256), nullable=True),
        sa.Column("eab_hmac_key_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("tos_agreed", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "origin",
            sa.Enum(
                "created",
                "imported",
                name="origin",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["ca_id"],
            ["certificate_authority.id"],
            name=op.f("fk_acme_account_ca_id_certificate_authority"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acme_account")),
        sa.UniqueConstraint("account_url", name=op.f("uq_acme_account_account_url")),
        sa.UniqueConstraint("name", name=op.f("uq_acme_account_name")),
    )
    op.create_index(op.f("ix_acme_account_ca_id"), "acme_account", ["ca_id"], unique=False)

    op.create_table(
        "api_token",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin",
                "operator",
                "read-only",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("user_id", _ID, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.Column("last_used_at", _TIME, nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_api_token_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("name", name=op.f("uq_api_token_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_index(op.f("ix_api_token_user_id"), "api_token", ["user_id"], unique=False)

    op.create_table(
        "certificate_entry",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("spc", sa.String(length=16), nullable=False),
        sa.Column("acme_account_id", _ID, nullable=False),
        sa.Column("stipa_account_id", _ID, nullable=True),
        sa.Column("crl_url", sa.String(length=2048), nullable=True),
        sa.Column("renew_before", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("orig_prefixes", sa.JSON(), nullable=False),
        sa.Column("is_default_signer", sa.Boolean(), nullable=False),
        sa.Column("default_attest", sa.String(length=1), nullable=True),
        sa.Column("spc_token_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=True),
        sa.Column("failing_since", _TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_holder", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", _TIME, nullable=True),
        sa.Column("lease_epoch", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["acme_account_id"],
            ["acme_account.id"],
            name=op.f("fk_certificate_entry_acme_account_id_acme_account"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["stipa_account_id"],
            ["stipa_account.id"],
            name=op.f("fk_certificate_entry_stipa_account_id_stipa_account"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_entry")),
        sa.UniqueConstraint("name", name=op.f("uq_certificate_entry_name")),
    )
    op.create_index(
        op.f("ix_certificate_entry_acme_account_id"),
        "certificate_entry",
        ["acme_account_id"],
        unique=False,
    )
    op.create_index(op.f("ix_certificate_entry_spc"), "certificate_entry", ["spc"], unique=False)
    op.create_index(
        op.f("ix_certificate_entry_stipa_account_id"),
        "certificate_entry",
        ["stipa_account_id"],
        unique=False,
    )

    op.create_table(
        "certificate",
        sa.Column("id", _ID, nullable=False),
        sa.Column("entry_id", _ID, nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "active",
                "superseded",
                "revoked",
                "expired",
                "failed",
                name="state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("not_before", _TIME, nullable=True),
        sa.Column("not_after", _TIME, nullable=True),
        sa.Column("chain_pem", sa.Text(), nullable=True),
        sa.Column("key_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("x5u_url", sa.String(length=2048), nullable=True),
        sa.Column("order_url", sa.String(length=2048), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("activated_at", _TIME, nullable=True),
        sa.Column("state_changed_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["certificate_entry.id"],
            name=op.f("fk_certificate_entry_id_certificate_entry"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate")),
        sa.UniqueConstraint("entry_id", "serial", name=op.f("uq_certificate_entry_id_serial")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_certificate_fingerprint")),
    )
    op.create_index(
        "ix_certificate_entry_id_state", "certificate", ["entry_id", "state"], unique=False
    )
    op.create_index(op.f("ix_certificate_not_after"), "certificate", ["not_after"], unique=False)
    op.create_index(
        "uq_certificate_one_active",
        "certificate",
        ["entry_id"],
        unique=True,
        sqlite_where=sa.text("state = 'active'"),
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_index(
        "uq_certificate_one_pending",
        "certificate",
        ["entry_id"],
        unique=True,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )

    op.create_table(
        "deployment_task",
        sa.Column("id", _ID, nullable=False),
        sa.Column("entry_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "directory",
                "script",
                "webhook",
                name="kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("last_certificate_id", _ID, nullable=True),
        sa.Column("last_run_at", _TIME, nullable=True),
        sa.Column(
            "last_outcome",
            sa.Enum(
                "started",
                "succeeded",
                "failed",
                "skipped",
                name="outcome",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["certificate_entry.id"],
            name=op.f("fk_deployment_task_entry_id_certificate_entry"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["last_certificate_id"],
            ["certificate.id"],
            name=op.f("fk_deployment_task_last_certificate_id_certificate"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_task")),
        sa.UniqueConstraint("entry_id", "name", name=op.f("uq_deployment_task_entry_id_name")),
    )
    op.create_index(
        op.f("ix_deployment_task_entry_id"), "deployment_task", ["entry_id"], unique=False
    )

    op.create_table(
        "lifecycle_event",
        sa.Column("id", _ID, nullable=False),
        sa.Column("entry_id", _ID, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column(
            "outcome",
            sa.Enum(
                "started",
                "succeeded",
                "failed",
                "skipped",
                name="outcome",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("certificate_id", _ID, nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificate.id"],
            name=op.f("fk_lifecycle_event_certificate_id_certificate"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["certificate_entry.id"],
            name=op.f("fk_lifecycle_event_entry_id_certificate_entry"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lifecycle_event")),
    )
    op.create_index(
        "ix_lifecycle_event_entry_id_at", "lifecycle_event", ["entry_id", "at"], unique=False
    )

    op.create_table(
        "sip_message",
        sa.Column("id", _ID, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column(
            "direction",
            sa.Enum(
                "inbound",
                "outbound",
                name="direction",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "action",
            sa.Enum(
                "signed",
                "verified",
                name="action",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("from_tn", sa.String(length=32), nullable=True),
        sa.Column("to_tn", sa.String(length=32), nullable=True),
        sa.Column("attest", sa.String(length=1), nullable=True),
        sa.Column("verstat", sa.String(length=32), nullable=True),
        sa.Column("sip_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("certificate_id", _ID, nullable=True),
        sa.Column("x5u", sa.String(length=2048), nullable=True),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificate.id"],
            name=op.f("fk_sip_message_certificate_id_certificate"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sip_message")),
    )
    op.create_index(op.f("ix_sip_message_at"), "sip_message", ["at"], unique=False)
    op.create_index(op.f("ix_sip_message_call_id"), "sip_message", ["call_id"], unique=False)
    op.create_index(
        op.f("ix_sip_message_certificate_id"), "sip_message", ["certificate_id"], unique=False
    )
    op.create_index(op.f("ix_sip_message_from_tn"), "sip_message", ["from_tn"], unique=False)


def downgrade() -> None:
    op.drop_table("sip_message")
    op.drop_table("lifecycle_event")
    op.drop_table("deployment_task")
    op.drop_table("certificate")
    op.drop_table("certificate_entry")
    op.drop_table("api_token")
    op.drop_table("acme_account")
    op.drop_table("user_account")
    op.drop_table("stipa_account")
    op.drop_table("setting")
    op.drop_table("certificate_authority")
