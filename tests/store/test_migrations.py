"""The shipped migrations build exactly the models' schema, from empty or from any earlier
revision, and go back down: on SQLite and on PostgreSQL (--db-url)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from setuptools import find_packages
from sqlalchemy import bindparam, inspect, text

from opensti.cli import main
from opensti.store import (
    Base,
    call_counts,
    current_revision,
    downgrade,
    head_revision,
    open_database,
    upgrade,
    upgrade_if_behind,
)
from opensti.store._migrate import HEAD_REVISION, MIGRATIONS_DIR
from opensti.store._types import UTCDateTime

from .conftest import assert_schema_matches_the_models, revisions

pytestmark = pytest.mark.db_dialect


def _tables(url: str) -> set[str]:
    database = open_database(url)
    try:
        return set(inspect(database.engine).get_table_names()) - {"alembic_version"}
    finally:
        database.dispose()


def test_upgrade_creates_every_model_table_and_downgrade_removes_them(database_url: str) -> None:
    url = database_url
    upgrade(url)
    assert _tables(url) == set(Base.metadata.tables)
    downgrade(url, "base")
    assert _tables(url) == set()
    upgrade(url, "head")
    assert _tables(url) == set(Base.metadata.tables)


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    database = open_database(database_url)
    upgrade(database)
    assert_schema_matches_the_models(database)
    database.dispose()


@pytest.mark.parametrize("start", ["base", *revisions()])
def test_every_earlier_revision_upgrades_to_head(database_url: str, start: str) -> None:
    """A database left at any revision (or empty) reaches exactly the head schema."""
    database = open_database(database_url)
    try:
        if start != "base":
            upgrade(database, start)
        assert current_revision(database) == (None if start == "base" else start)
        upgrade(database, "head")
        assert_schema_matches_the_models(database)
    finally:
        database.dispose()


def test_the_head_revision_constant_is_alembics_head(database_url: str) -> None:
    """``upgrade_if_behind`` reads the version without alembic, against HEAD_REVISION."""
    assert head_revision() == HEAD_REVISION
    database = open_database(database_url)
    try:
        upgrade_if_behind(database)  # a new store: migrated
        assert current_revision(database) == HEAD_REVISION
        downgrade(database, "-1")
        upgrade_if_behind(database)  # one behind: migrated again
        assert current_revision(database) == HEAD_REVISION
        upgrade_if_behind(database)  # at head: left as it is
        assert current_revision(database) == HEAD_REVISION
    finally:
        database.dispose()


def test_revisions_walk_up_and_down_one_step_at_a_time(database_url: str) -> None:
    database = open_database(database_url)
    try:
        chain = revisions()
        assert chain[-1] == head_revision()
        for revision in chain:
            upgrade(database, revision)
            assert current_revision(database) == revision
        for older in [*reversed(chain[:-1]), None]:
            downgrade(database, older or "base")
            assert current_revision(database) == older
        assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
    finally:
        database.dispose()


def test_unknown_revision_is_a_clear_error(database_url: str) -> None:
    from opensti.core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="'nope'"):
        upgrade(database_url, "nope")


def test_migrations_are_packages_so_an_install_ships_them() -> None:
    src = Path(__file__).parents[2] / "src"
    packages = set(find_packages(str(src)))
    assert {"opensti.store.migrations", "opensti.store.migrations.versions"} <= packages
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert any(MIGRATIONS_DIR.joinpath("versions").glob("0001_*.py"))


def _cli(*argv: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return int(exit_info.value.code or 0)


def test_cli_upgrade_and_downgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENSTI_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.delenv("OPENSTI_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPENSTI_CONFIG", raising=False)
    assert _cli("db", "upgrade") == 0
    url = f"sqlite:///{tmp_path / 'd' / 'opensti.db'}"
    assert _tables(url) == set(Base.metadata.tables)
    assert f"empty -> {head_revision()}" in capsys.readouterr().out
    assert _cli("db", "downgrade", "base") == 0
    assert _tables(url) == set()
    assert _cli("db", "downgrade", "no-such-revision") == 2
    assert "no-such-revision" in capsys.readouterr().err


def test_cli_reads_the_database_url_from_a_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENSTI_DATABASE_URL", raising=False)
    target = tmp_path / "elsewhere.db"
    config = tmp_path / "opensti.toml"
    config.write_text(f'database_url = "sqlite:///{target}"\n')
    assert _cli("db", "upgrade", "--config", str(config)) == 0
    assert _tables(f"sqlite:///{target}") == set(Base.metadata.tables)


def test_0003_keeps_the_call_log_both_ways(database_url: str) -> None:
    """SQLite rebuilds sip_message to add the foreign key: no call may be lost."""

    database = open_database(database_url)
    insert = text(
        "INSERT INTO sip_message (at, direction, action, call_id, x5u)"
        " VALUES (:at, 'inbound', 'verified', 'kept@host', 'https://peer.example/c.pem')"
    )
    try:
        upgrade(database, "0002")
        with database.session() as session:
            session.execute(insert, {"at": "2026-03-01 12:00:00+00:00"})
        upgrade(database, "0003")
        with database.read_session() as session:
            row = session.execute(
                text("SELECT call_id, x5u, remote_certificate_id FROM sip_message")
            ).one()
            assert tuple(row) == ("kept@host", "https://peer.example/c.pem", None)
        downgrade(database, "0002")
        with database.read_session() as session:
            assert session.execute(text("SELECT call_id FROM sip_message")).scalars().all() == [
                "kept@host"
            ]
        assert "remote_certificate" not in set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()


def test_0004_adds_the_sign_in_counters_and_takes_them_away(database_url: str) -> None:
    database = open_database(database_url)
    try:
        upgrade(database, "0003")
        assert "sign_in_failure" not in _tables(database_url)
        upgrade(database, "0004")
        with database.session() as session:
            session.execute(
                text(
                    "INSERT INTO sign_in_failure (kind, key, failures, locked_until)"
                    " VALUES ('user', 'alice', 5, :at)"
                ),
                {"at": "2026-03-01 12:00:00+00:00"},
            )
        indexes = inspect(database.engine).get_indexes("sign_in_failure")
        assert [index["column_names"] for index in indexes] == [["locked_until"]]
        downgrade(database, "0003")
        assert "sign_in_failure" not in _tables(database_url)
        assert current_revision(database) == "0003"
    finally:
        database.dispose()


def test_0010_counts_the_last_day_of_the_call_log_per_minute(database_url: str) -> None:
    """The dashboard's counts start with the calls already logged in the last day."""
    database = open_database(database_url)
    insert = text(
        "INSERT INTO sip_message (at, direction, action, call_id, attest, sip_code)"
        " VALUES (:at, 'outbound', 'signed', :call_id, 'A', 302)"
    ).bindparams(bindparam("at", type_=UTCDateTime()))
    minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(hours=1)
    try:
        upgrade(database, "0009_entry_rcd")
        with database.session() as session:
            for call_id, at in (
                ("one", minute + dt.timedelta(seconds=5)),
                ("two", minute + dt.timedelta(seconds=50)),
                ("old", minute - dt.timedelta(days=2)),
            ):
                session.execute(insert, {"at": at, "call_id": call_id})
        upgrade(database, "0010_call_log_indexes")
        with database.read_session() as session:
            [row] = call_counts(session, minute - dt.timedelta(days=3))
        assert (row.minute, row.action.value, row.attest, row.verstat, row.sip_code) == (
            minute,
            "signed",
            "A",
            "",
            302,
        )
        assert row.calls == 2
        downgrade(database, "0009_entry_rcd")
        assert "call_minute" not in set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()
