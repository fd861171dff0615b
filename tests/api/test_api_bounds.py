"""The management API and the CLI keep the bounds every door shares: a path id too
big for any column, an absurd or far-off iat, an over-long origid, a token that
would be born expired, an x5u that would break the Identity header."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from opensti.store import Role
from tests.api.api_support import Mgmt

pytestmark = pytest.mark.db_dialect

HUGE = "99999999999999999999999"
ORIG, DEST = "12155550121", "12155550131"
OPENSTI = str(Path(sys.executable).with_name("opensti"))


@pytest.mark.parametrize("path", [f"/certificates/{HUGE}", f"/certificates/{HUGE}/chain.pem"])
async def test_a_huge_path_id_is_a_400(mgmt: Mgmt, path: str) -> None:
    response = await mgmt.call("GET", path, Role.READ_ONLY)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        {"iat": 10**30},
        {"iat": int(time.time()) + 86_400},
        {"iat": -1},
        {"origid": "x" * 257},
    ],
)
async def test_signing_bounds(mgmt: Mgmt, body: dict[str, object]) -> None:
    response = await mgmt.call(
        "POST", "/sign", Role.OPERATOR, json={"orig": ORIG, "dest": DEST, **body}
    )
    assert response.status_code == 400, response.text


async def test_a_token_cannot_be_made_already_expired(mgmt: Mgmt) -> None:
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    response = await mgmt.call(
        "POST", "/tokens", Role.ADMIN, json={"name": "late", "role": "signer", "expires_at": past}
    )
    assert response.status_code == 400, response.text
    assert "future" in response.json()["detail"]


def _sign(key: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSTI, "passport", "sign", "--key", str(key), "--orig", ORIG, "--dest", DEST,
         "--attest", "A", *extra],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--x5u", "https://a/x.pem>;evil=1"), "x5u URL may not contain"),
        (("--x5u", "https://a/x.pem\r\nVia: x"), "x5u URL may not contain"),
        (("--x5u", "ftp://a/x.pem"), "https URL"),
        (("--x5u", "https://a/x.pem", "--iat", str(10**20)), "iat must be between"),
        (("--x5u", "https://a/x.pem", "--iat", "1"), "iat must be within"),
        (("--x5u", "https://a/x.pem", "--origid", "o" * 300), "origid"),
    ],
)
def test_cli_sign_bounds(tmp_path: Path, extra: tuple[str, ...], message: str) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    result = _sign(key, *extra)
    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
