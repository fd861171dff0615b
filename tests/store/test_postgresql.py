"""The same schema and the same atomic operations on PostgreSQL (psycopg 3).

Uses ``OPENSTI_TEST_POSTGRES_URL`` when set (an empty database the tests may fill),
otherwise starts a throwaway cluster on 127.0.0.1 with the Debian PostgreSQL binaries.
Skipped when psycopg or PostgreSQL is not installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from opensti.sandbox.pki import private_key_pem
from opensti.store import (
    Base,
    CertificateState,
    Database,
    Secret,
    SecretBox,
    add_certificate,
    downgrade,
    list_certificates,
    open_database,
    upgrade,
)

from .conftest import NOW, add_entry, race_for_lease

pytest.importorskip("psycopg")
pytestmark = pytest.mark.integration


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    return Path(os.path.realpath(found)).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if os.environ.get("OPENSTI_TEST_POSTGRES_URL"):
        yield os.environ["OPENSTI_TEST_POSTGRES_URL"]
        return
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="opensti-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        owner = pwd.getpwnam("postgres")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = workdir / "data", _free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "opensti"]
    subprocess.run([*prefix, *initdb, "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    options = f"-h 127.0.0.1 -p {port} -k {workdir} -F"
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-w"]
    subprocess.run(
        [*pg_ctl, "-l", str(workdir / "log"), "-o", options, "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://opensti@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = open_database(postgres_url)
    upgrade(database)
    yield database
    downgrade(database, "base")
    database.dispose()


def test_migrations_match_the_models_and_go_down(postgres_url: str) -> None:
    database = open_database(postgres_url)
    upgrade(database)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    downgrade(database, "base")
    assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
    database.dispose()


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
