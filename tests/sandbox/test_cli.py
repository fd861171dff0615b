"""``opensti sandbox`` as a real child process, and its add-eab / add-provider commands."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from opensti.sandbox.config import PROFILE_SETTINGS, PROFILES
from tests.sandbox.acme_support import (
    eab_binding,
    new_key,
    opensti_program,
    public_jwk,
    run_program,
    sandbox_process,
    sign_jws,
)

pytestmark = pytest.mark.integration

PROVIDERS = """
[[providers]]
account_id = "555X"
name = "File carrier"
spcs = ["555X", "556Y"]
[[providers.users]]
user_id = "fileuser"
password = "file-pass"
"""


def opensti(*args: str) -> subprocess.CompletedProcess[str]:
    return run_program(opensti_program(), *args)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A sandbox child process on a free port; yields its announced lines and data dir."""
    data_dir = tmp_path / "data"
    providers = tmp_path / "providers.toml"
    providers.write_text(PROVIDERS)
    eab = opensti("sandbox", "add-eab", "--data-dir", str(data_dir), "--json")
    assert eab.returncode == 0, eab.stderr
    with sandbox_process(data_dir, "--providers", str(providers)) as announced:
        yield {"eab": eab.stdout, **announced}, data_dir


def test_served_sandbox_registers_an_account_with_cli_eab(
    served: tuple[dict[str, str], Path],
) -> None:
    announced, data_dir = served
    root = Path(announced["TLS root (trust this)"])
    assert root == data_dir / "tls" / "root.pem"
    http = httpx.Client(verify=ssl.create_default_context(cafile=str(root)), trust_env=False)
    directory = http.get(announced["ACME directory"]).json()
    credentials = json.loads(announced["eab"])
    key = new_key()
    url = directory["newAccount"]
    nonce = http.head(directory["newNonce"]).headers["Replay-Nonce"]
    binding = eab_binding(credentials["kid"], credentials["hmac_key"], url, public_jwk(key))
    body = sign_jws(
        key,
        {"alg": "ES256", "jwk": public_jwk(key), "nonce": nonce, "url": url},
        {"termsOfServiceAgreed": True, "externalAccountBinding": binding},
    )
    response = http.post(
        url, content=json.dumps(body), headers={"Content-Type": "application/jose+json"}
    )
    assert response.status_code == 201, response.text
    login = http.post(
        announced["STI-PA base URL"] + "/api/v1/auth/login",
        json={"userId": "fileuser", "password": "file-pass"},
    )
    assert login.json()["status"] == "success"
    http.close()


def test_add_provider_then_login(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    added = opensti(
        "sandbox",
        "add-provider",
        "--data-dir",
        str(data_dir),
        "--account-id",
        "777A",
        "--spc",
        "777A",
        "--spc",
        "778B",
        "--user",
        "u1",
        "--password",
        "pw-777",
    )
    assert added.returncode == 0, added.stderr
    from opensti.sandbox.config import SandboxConfig
    from opensti.sandbox.server import run_sandbox_in_thread

    with run_sandbox_in_thread(SandboxConfig(data_dir=data_dir, port=0, http=True)) as handle:
        http = httpx.Client(base_url=handle.base_url, trust_env=False)
        ok = http.post("/api/v1/auth/login", json={"userId": "u1", "password": "pw-777"})
        assert ok.status_code == 200
        bad = http.post("/api/v1/auth/login", json={"userId": "u1", "password": "nope"})
        assert bad.status_code == 401
        http.close()


def test_unknown_profile_is_a_usage_error(tmp_path: Path) -> None:
    result = opensti("sandbox", "--profile", "nope", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "unknown profile" in result.stderr


def test_help_lists_every_profile_and_its_settings() -> None:
    shown = opensti("sandbox", "--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    for name in PROFILES:
        assert f"{name}: " in text
    for setting in PROFILE_SETTINGS:
        assert f"{setting}=" in text
    assert "--fingerprint" in text


def test_a_bad_setting_is_a_one_line_usage_error(tmp_path: Path) -> None:
    result = opensti("sandbox", "--fingerprint", "md5", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--fingerprint must be one of jwk_thumbprint, spki_sha256" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_fingerprint_override_is_served(tmp_path: Path) -> None:
    with sandbox_process(tmp_path / "data", "--fingerprint", "spki_sha256") as announced:
        assert "fingerprint=spki_sha256" in announced["CA profile"]
        assert "subject=csr" in announced["CA profile"]
