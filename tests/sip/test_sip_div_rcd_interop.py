"""Interop for diverted and branded calls: SIPp drives the redirect server's sign and
verify listeners (the listeners ``opensti serve`` runs) with div PASSporTs (RFC 8946)
and rcd claims (RFC 9795); secsipidx still verifies the SHAKEN PASSporT of a call that
also carries them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sip_support import DEST, ORIG, X5U, DemoSigner, identity_fields
from test_sip_interop import (  # noqa: F401 (fixtures)
    CALLS,
    _listener,
    _secsipidx,
    key_files,
    needs_secsipidx,
    needs_sipp,
    run_sipp,
    server,
)
from tests.core.core_support import VECTORS

from opensti.core.identity import format_identity
from opensti.core.passport import PassportSigner, ShakenClaims
from opensti.core.rcd import build_rcd_claims
from opensti.sip import SIPServer

pytestmark = [pytest.mark.integration, pytest.mark.interop]

FORWARDED = "12155550199"
LOGO = (VECTORS / "rcd" / "logo.png").read_bytes()


def _branded(passport_signer: PassportSigner, iat: int) -> str:
    claims = ShakenClaims(ORIG, (DEST,), iat, "A", "branded-call")
    rcd = build_rcd_claims(
        name="Example Bank", icon="https://brand.example.com/logo.png", icon_content=LOGO
    )
    token = passport_signer.sign_payload({**claims.to_payload(), **rcd})
    return format_identity(token, X5U)


@needs_sipp
async def test_sipp_diverted_call_sign_then_verify(
    server: SIPServer,  # noqa: F811
    call_signer: DemoSigner,
    tmp_path: Path,
) -> None:
    shaken = [call_signer.sign(ORIG, [DEST], "A", str(n)) for n in range(CALLS)]
    await run_sipp(
        _listener(server, "udp", "sign"),
        "divert_sign.xml",
        tmp_path,
        inf=identity_fields(tmp_path, [[value] for value in shaken]),
    )
    rows = [[value, call_signer.sign_div(ORIG, [FORWARDED], DEST, "x")] for value in shaken]
    await run_sipp(
        _listener(server, "udp", "verify"),
        "divert_verify.xml",
        tmp_path,
        inf=identity_fields(tmp_path, rows),
    )


@needs_sipp
async def test_sipp_branded_call_verifies(
    server: SIPServer,  # noqa: F811
    passport_signer: PassportSigner,
    tmp_path: Path,
) -> None:
    rows = [[_branded(passport_signer, int(time.time()))] for _ in range(CALLS)]
    await run_sipp(
        _listener(server, "udp", "verify"),
        "verify.xml",
        tmp_path,
        inf=identity_fields(tmp_path, rows),
    )


@needs_secsipidx
async def test_secsipidx_verifies_shaken_passports_carrying_rcd_beside_a_div(
    passport_signer: PassportSigner,
    call_signer: DemoSigner,
    key_files: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    _, public = key_files
    branded = tmp_path / "branded.txt"
    branded.write_text(_branded(passport_signer, int(time.time())))
    status, output = await _secsipidx(
        "-check", "-fidentity", str(branded), "-fpubkey", str(public), "-expire", "60"
    )
    assert status == 0, output
    # A diverted call: secsipidx (which knows no ppt=div) still verifies the SHAKEN
    # PASSporT that travels beside the div one, untouched by the diversion.
    shaken = tmp_path / "shaken.txt"
    shaken.write_text(call_signer.sign(ORIG, [DEST], "A", "diverted"))
    status, output = await _secsipidx(
        "-check", "-fidentity", str(shaken), "-fpubkey", str(public), "-expire", "60"
    )
    assert status == 0, output
