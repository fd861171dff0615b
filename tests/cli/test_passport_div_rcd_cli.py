"""``opensti passport sign|verify`` for diverted calls (RFC 8946) and Rich Call Data
(RFC 9795), run as the installed console script, as a user or a script does.

The logo is served by a real HTTPS server on 127.0.0.1 (hence ``--allow-private-*``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from tests._servers import LocalHTTPServer, Route, serve
from tests.cli.test_passport_cli import (  # noqa: F401 (fixtures)
    ORIG,
    X5U,
    Files,
    assert_usage_error,
    files,
    run,
)
from tests.core.core_support import VECTORS

pytestmark = pytest.mark.integration

FIRST, FORWARDED = "12155550131", "12155550199"
LOGO = (VECTORS / "rcd" / "logo.png").read_bytes()
LOGO_RCDI = (VECTORS / "rcd" / "logo.png.rcdi").read_text().strip()


@pytest.fixture(scope="module")
def logo_server(files: Files) -> Iterator[LocalHTTPServer]:  # noqa: F811
    with serve(files.tls) as server:
        server.routes["/logo.png"] = Route.body(LOGO, content_type="image/png")
        yield server


def _sign(files: Files, *extra: str, dest: str = FIRST, **env: str) -> str:  # noqa: F811
    proc = run(
        "passport", "sign", "--key", str(files.key), "--x5u", X5U, "--orig", ORIG,
        "--dest", dest, "--iat", files.iat, *extra, **env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _verify(files: Files, *identities: str, dest: str, **env: str) -> tuple[int, dict]:  # noqa: F811
    args = [arg for value in identities for arg in ("--identity", value)]
    proc = run(
        "passport", "verify", *args, "--trust-anchors", str(files.anchors),
        "--cert-file", str(files.chain), "--now", files.iat, "--orig", ORIG, "--dest", dest,
        "--allow-private-x5u", **env,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc
    return proc.returncode, json.loads(proc.stdout)


def test_diverted_call_signs_and_verifies_as_a_chain(files: Files) -> None:  # noqa: F811
    shaken = _sign(files, "--attest", "A")
    div = _sign(files, "--ppt", "div", "--div", FIRST, dest=FORWARDED)
    header = parse_identity(div)
    assert header.ppt == "div"
    payload = decode_passport(header.token).payload
    assert payload["div"] == {"tn": FIRST}
    assert payload["dest"] == {"tn": [FORWARDED]}
    code, result = _verify(files, shaken, div, dest=FORWARDED)
    assert code == 0, result
    assert result["verstat"] == "TN-Validation-Passed"
    assert [link["div"] for link in result["div"]] == [FIRST]
    assert result["base"]["verstat"] == "TN-Validation-Passed"

    gap = _sign(files, "--ppt", "div", "--div", "12155550100", dest=FORWARDED)
    code, result = _verify(files, shaken, gap, dest=FORWARDED)
    assert code == 1
    assert result["sip_code"] == 438
    assert "div chain" in result["reason"]
    assert result["base"]["verstat"] == "TN-Validation-Passed"


def test_branded_call_with_a_fetched_logo(files: Files, logo_server: LocalHTTPServer) -> None:  # noqa: F811
    env = {"SSL_CERT_FILE": str(files.tls.root_pem)}
    url = logo_server.url("/logo.png")
    value = _sign(
        files, "--attest", "A", "--rcd-name", "Example Bank", "--rcd-icon", url,
        "--allow-private-icon", **env,
    )  # fmt: skip
    payload = decode_passport(parse_identity(value).token).payload
    assert payload["rcd"] == {"nam": "Example Bank", "icn": url}
    assert payload["rcdi"] == {"/icn": LOGO_RCDI}  # the OpenSSL-computed digest
    code, result = _verify(files, value, dest=FIRST, **env)
    assert code == 0, result
    assert result["rcd"]["verified"] is True
    assert result["rcd"]["nam"] == "Example Bank"

    logo_server.routes["/logo.png"] = Route.body(LOGO + b"changed", content_type="image/png")
    try:
        code, result = _verify(files, value, dest=FIRST, **env)
    finally:
        logo_server.routes["/logo.png"] = Route.body(LOGO, content_type="image/png")
    assert code == 0  # the TN validation stands; the name and logo are not shown
    assert result["rcd"]["verified"] is False
    assert result["rcd"]["sip_code"] == 438
    assert "digest" in result["rcd"]["reason"]


def test_bad_div_and_rcd_options_are_usage_errors(
    files: Files,  # noqa: F811
    logo_server: LocalHTTPServer,
) -> None:
    base = ("passport", "sign", "--key", str(files.key), "--x5u", X5U, "--orig", ORIG,
            "--dest", FIRST)  # fmt: skip
    assert_usage_error(run(*base, "--attest", "A", "--div", FIRST))
    assert_usage_error(run(*base, "--ppt", "div", "--div", FIRST, "--attest", "A"))
    # A loopback logo without --allow-private-icon: refused like such an x5u.
    url = logo_server.url("/logo.png")
    proc = run(*base, "--attest", "A", "--rcd-icon", url)
    assert_usage_error(proc)
    assert "non-public" in proc.stderr
