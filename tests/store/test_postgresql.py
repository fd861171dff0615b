"""PostgreSQL-specific behaviour (psycopg 3), checked even when the suite runs on SQLite.

Uses the --db-url server when it is PostgreSQL, otherwise a throwaway cluster started
with scripts/postgres-cluster.sh (see tests/conftest.py); skipped when psycopg or the
PostgreSQL binaries are missing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from opensti.sandbox.pki import private_key_pem
from opensti.store import (
    CertificateState,
    Database,
    Secret,
    SecretBox,
    add_certificate,
    downgrade,
    list_certificates,
)

from .conftest import NOW, add_entry, assert_schema_matches_the_models, race_for_lease

pytestmark = pytest.mark.integration


def test_migrations_match_the_models_and_go_down(pg: Database) -> None:
    assert_schema_matches_the_models(pg)
    downgrade(pg, "base")
    assert set(inspect(pg.engine).get_table_names()) <= {"alembic_version"}


def test_lease_race_has_one_winner(pg: Database, box: SecretBox, postgres_url: str) -> None:
    entry = add_entry(pg, box)
    assert len(race_for_lease(postgres_url, entry.id, 6)) == 1


def test_activation_and_aware_datetimes(pg: Database, box: SecretBox, pki) -> None:  # type: ignore[no-untyped-def]
    entry = add_entry(pg, box)
    for _ in range(2):
        key, cert = pki.issue("123H")
        with pg.session() as session:
            add_certificate(
                session,
                box,
                entry.id,
                chain_pem=pki.chain_pem(cert),
                key_pem=Secret(private_key_pem(key)),
                now=NOW,
                activate=True,
            )
    with pg.read_session() as session:
        certs = list_certificates(session, entry.id)
        assert [c.state for c in certs] == [CertificateState.ACTIVE, CertificateState.SUPERSEDED]
        assert certs[0].activated_at == NOW
        assert certs[0].activated_at.tzinfo is not None
