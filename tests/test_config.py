"""Settings: defaults, environment, TOML file, and their priority."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opensti.config import Settings, load_settings
from opensti.core.errors import InvalidInput


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "OPENSTI_DATA_DIR",
        "OPENSTI_DATABASE_URL",
        "OPENSTI_SECRET_KEY",
        "OPENSTI_PUBLIC_BASE_URL",
        "OPENSTI_LOG_LEVEL",
        "OPENSTI_SPC_PATTERN",
        "OPENSTI_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    data_dir = tmp_path / "home" / ".local" / "share" / "opensti"
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir / 'opensti.db'}"
    assert settings.secret_key_file == data_dir / "secret.key"
    assert (settings.secret_key, settings.public_base_url, settings.log_level) == (
        None,
        None,
        "INFO",
    )


def test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENSTI_DATA_DIR", "~/srv")
    monkeypatch.setenv("OPENSTI_SECRET_KEY", "k" * 43)
    monkeypatch.setenv("OPENSTI_PUBLIC_BASE_URL", "https://cr.carrier.example/")
    monkeypatch.setenv("OPENSTI_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.data_dir == tmp_path / "home" / "srv"
    assert settings.database_url.endswith("/home/srv/opensti.db")
    assert settings.public_base_url == "https://cr.carrier.example"
    assert settings.log_level == "DEBUG"
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "k" * 43
    assert "kkkk" not in repr(settings)
    monkeypatch.setenv("OPENSTI_DATABASE_URL", "postgresql+psycopg://db/opensti")
    assert load_settings().database_url == "postgresql+psycopg://db/opensti"


def test_toml_file_below_environment_below_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "opensti.toml"
    config.write_text(
        'data_dir = "/from/toml"\nlog_level = "warning"\nspc_pattern = "[0-9A-Z]{1,8}"\n'
    )
    settings = load_settings(config)
    assert (settings.data_dir, settings.log_level) == (Path("/from/toml"), "WARNING")
    assert settings.spc_pattern == "[0-9A-Z]{1,8}"
    monkeypatch.setenv("OPENSTI_LOG_LEVEL", "error")
    assert load_settings(config).log_level == "ERROR"
    assert load_settings(config, log_level="CRITICAL").log_level == "CRITICAL"
    # OPENSTI_CONFIG names the file when no path is given; the file is not sticky.
    monkeypatch.setenv("OPENSTI_CONFIG", str(config))
    assert load_settings().data_dir == Path("/from/toml")
    monkeypatch.delenv("OPENSTI_CONFIG")
    assert load_settings().data_dir != Path("/from/toml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("data_dir = ", "is not valid TOML"),
        ('log_level = "LOUD"', "log_level"),
        ('public_base_url = "cr.example"', "public_base_url: .*http"),
        ('spc_pattern = "[unclosed"', "spc_pattern: .*regular expression"),
        ("unknown_field = 1", "unknown_field"),
        ("workers = 0", "workers: .*greater than or equal to 1"),
        ('workers = "all"', "workers: .*valid integer"),
    ],
)
def test_bad_configuration_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content + "\n")
    with pytest.raises(InvalidInput, match=message):
        load_settings(config)


def test_auto_workers_are_one_per_core_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cores of the process's CPU affinity (a container's CPU set), not the host's."""
    cores = os.sched_getaffinity(0)
    monkeypatch.setenv("OPENSTI_WORKERS", "auto")
    assert load_settings().workers == min(len(cores), 64)
    os.sched_setaffinity(0, {min(cores)})  # a container given one core
    try:
        assert load_settings(workers="AUTO").workers == 1
    finally:
        os.sched_setaffinity(0, cores)
    # No machine here has more than 64 cores to give.
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(200)))
    assert load_settings().workers == 64  # the most serve forks
    assert load_settings(workers=5).workers == 5


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml")


def test_settings_are_immutable() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.log_level = "DEBUG"  # type: ignore[misc]
    assert isinstance(settings, Settings)


def test_x5u_and_rsa_policy_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Lists from the environment are comma-separated, from TOML lists; defaults are strict
    for x5u and accept RSA CA certificates (docs/verification.md says why)."""
    defaults = load_settings()
    assert (defaults.x5u_allow_http, defaults.x5u_private_hosts, defaults.x5u_deny_hosts) == (
        False,
        (),
        (),
    )
    assert defaults.verify_rsa_ca is True
    monkeypatch.setenv("OPENSTI_X5U_PRIVATE_HOSTS", "sti-cr.lab, 10.20.0.0/16")
    monkeypatch.setenv("OPENSTI_X5U_ALLOW_HTTP", "true")
    config = tmp_path / "opensti.toml"
    config.write_text('x5u_deny_hosts = ["*.bad.example"]\nverify_rsa_ca = false\n')
    settings = load_settings(config)
    assert settings.x5u_private_hosts == ("sti-cr.lab", "10.20.0.0/16")
    assert settings.x5u_deny_hosts == ("*.bad.example",)
    assert settings.x5u_allow_http is True
    assert settings.verify_rsa_ca is False
    monkeypatch.setenv("OPENSTI_X5U_PRIVATE_HOSTS", "10.0.0.0/33")
    with pytest.raises(InvalidInput, match="x5u_private_hosts"):
        load_settings()
