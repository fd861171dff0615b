"""The STIR API served by a real uvicorn on 127.0.0.1, and secsipidx checking what it signs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests._servers import TLSFiles, serve_asgi
from tests.api.stir_support import STIR_HEADERS, Deployment, stir_app

pytestmark = pytest.mark.integration

SECSIPIDX = shutil.which("secsipidx")


@pytest.fixture
async def base_url(site: Deployment, tls: TLSFiles) -> AsyncIterator[str]:
    async with stir_app(site, tls) as app, serve_asgi(app) as url:
        yield url


async def _sign(base_url: str, orig: str, dest: str) -> str:
    request = {
        "signingRequest": {
            "attest": "B",
            "dest": {"tn": [dest]},
            "iat": int(time.time()),
            "orig": {"tn": orig},
            "origid": "4437c7eb-8f57-4e3c-9a4d-5d7b5a0a1b2c",
        }
    }
    async with httpx.AsyncClient(base_url=base_url, headers=STIR_HEADERS) as client:
        response = await client.post("/stir/v1/signing", json=request)
    assert response.status_code == 200, response.text
    return str(response.json()["signingResponse"]["identity"])


async def test_sign_and_verify_over_a_real_socket(base_url: str) -> None:
    identity = await _sign(base_url, "12155550121", "12155550131")
    request = {
        "verificationRequest": {
            "from": {"tn": "12155550121"},
            "to": {"tn": ["12155550131"]},
            "time": int(time.time()),
            "identity": identity,
        }
    }
    async with httpx.AsyncClient(base_url=base_url, headers=STIR_HEADERS) as client:
        answer = (await client.post("/stir/v1/verification", json=request)).json()
        metrics = (await client.get("/metrics")).text
    assert answer == {"verificationResponse": {"verstat": "TN-Validation-Passed"}}
    assert 'opensti_calls_signed_total{outcome="signed"} 1' in metrics


@pytest.mark.interop
@pytest.mark.skipif(SECSIPIDX is None, reason="secsipidx is not installed")
async def test_secsipidx_verifies_what_the_api_signs(
    base_url: str, site: Deployment, tmp_path: Path
) -> None:
    identity = await _sign(base_url, "12155550121", "12155550131")
    (tmp_path / "identity.txt").write_text(identity)
    public = site.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "public.pem").write_bytes(public)
    assert SECSIPIDX is not None

    def check(path: str) -> subprocess.CompletedProcess[str]:
        command = [SECSIPIDX, "-c", "-fidentity", path, "-fpubkey", "public.pem", "-expire", "60"]
        return subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
        )

    ok = await asyncio.to_thread(check, "identity.txt")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    token, rest = identity.split(";", 1)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA;{rest}"
    (tmp_path / "tampered.txt").write_text(tampered)
    bad = await asyncio.to_thread(check, "tampered.txt")
    assert bad.returncode != 0
