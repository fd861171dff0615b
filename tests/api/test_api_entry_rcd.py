"""An entry's caller name and logo (RFC 9795 ``nam``/``icn``) through ``/api/v1``: set
with PATCH, the logo fetched once for its rcdi digest (from a real HTTPS server on
127.0.0.1), signed into every SHAKEN PASSporT of the entry with no fetch per call; and
``/sign`` with a request's own logo."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from opensti.core.identity import parse_identity
from opensti.core.passport import decode_passport
from opensti.core.rcd import rcdi_digest
from opensti.lifecycle.branding import refresh_icons
from opensti.store import Role
from tests._servers import LocalHTTPServer, Route, TLSFiles, serve
from tests.api.api_support import Mgmt
from tests.api.test_api_calls import assert_problem, sign
from tests.core.core_support import VECTORS

pytestmark = pytest.mark.integration

LOGO = (VECTORS / "rcd" / "logo.png").read_bytes()
NAME = "Example Bank"


@pytest.fixture
def logos(tls: TLSFiles, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHTTPServer]:
    """Logos on HTTPS at 127.0.0.1, which the app's fetch rules are told to allow and
    whose test root its TLS trusts (requested before ``mgmt``, which reads the settings)."""
    monkeypatch.setenv("OPENSTI_X5U_PRIVATE_HOSTS", "127.0.0.1")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.root_pem))
    with serve(tls) as server:
        server.routes["/logo.png"] = Route.body(LOGO, content_type="image/png")
        server.routes["/page.html"] = Route.body(b"<html>", content_type="text/html")
        yield server


async def _patch(mgmt: Mgmt, **body: Any) -> Any:
    return await mgmt.call("PATCH", "/entries/main", Role.ADMIN, json=body)


def _payload(identity: str) -> dict[str, Any]:
    return decode_passport(parse_identity(identity).token).payload


async def test_the_entry_name_and_logo_are_signed_into_every_call(
    logos: LocalHTTPServer, mgmt: Mgmt
) -> None:
    url = logos.url("/logo.png")
    response = await _patch(mgmt, rcd_name=NAME, rcd_icon=url)
    assert response.status_code == 200, response.text
    entry = response.json()
    assert (entry["rcd_name"], entry["rcd_icon"]) == (NAME, url)
    assert entry["rcd_icon_digest"] == rcdi_digest(LOGO)
    for _ in range(3):
        payload = _payload((await sign(mgmt, attest="A"))["identity"])
        assert payload["rcd"] == {"nam": NAME, "icn": url}
        assert payload["rcdi"] == {"/icn": rcdi_digest(LOGO)}
        assert payload["attest"] == "A"  # still a SHAKEN PASSporT
    # Fetched when set, not per call.
    assert logos.requests.count("/logo.png") == 1
    # A request's own rcd replaces the entry's.
    own = _payload((await sign(mgmt, rcd_name="Other Name"))["identity"])
    assert own["rcd"] == {"nam": "Other Name"}
    assert "rcdi" not in own
    # Empty values remove the settings: calls are plain SHAKEN again.
    response = await _patch(mgmt, rcd_name="", rcd_icon="")
    assert response.json()["rcd_name"] is None
    assert "rcd" not in _payload((await sign(mgmt))["identity"])


async def test_sign_request_with_a_logo_gets_its_digest(logos: LocalHTTPServer, mgmt: Mgmt) -> None:
    url = logos.url("/logo.png")
    payload = _payload((await sign(mgmt, rcd_icon=url, rcd_reason="Appointment"))["identity"])
    assert payload["rcd"] == {"icn": url}
    assert payload["rcdi"] == {"/icn": rcdi_digest(LOGO)}
    assert payload["crn"] == "Appointment"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"rcd_icon": "http://127.0.0.1/logo.png"}, "https"),
        ({"rcd_icon": "{server}/page.html"}, "cannot be used"),
        ({"rcd_icon": "{server}/missing.png"}, "cannot be used"),
        ({"rcd_name": "Bank\x07"}, "control characters"),
    ],
)
async def test_unusable_names_and_logos_are_refused_and_change_nothing(
    logos: LocalHTTPServer, mgmt: Mgmt, body: dict[str, str], why: str
) -> None:
    body = {k: v.replace("{server}", logos.url("").rstrip("/")) for k, v in body.items()}
    response = await _patch(mgmt, **body)
    assert response.status_code == 400, response.text
    assert_problem(response.json(), 400, "InvalidInput", why)
    entry = (await mgmt.call("GET", "/entries/main", Role.READ_ONLY)).json()["entry"]
    assert (entry["rcd_name"], entry["rcd_icon"]) == (None, None)
    signed = await mgmt.call(
        "POST", "/sign", Role.OPERATOR, json={"orig": "12025550100", "dest": "12025550199", **body}
    )
    assert signed.status_code in (400, 422), signed.text


async def test_refresh_follows_the_logo_and_keeps_the_last_digest_on_failure(
    logos: LocalHTTPServer, mgmt: Mgmt
) -> None:
    url = logos.url("/logo.png")
    assert (await _patch(mgmt, rcd_icon=url)).status_code == 200
    app = mgmt.app
    logos.routes["/logo.png"] = Route.body(LOGO + b"\0", content_type="image/png")
    [done] = refresh_icons(app.database, app.certificates.icon_fetch)
    assert (done.entry, done.changed, done.error) == ("main", True, None)
    assert app.certificates.show_entry("main").entry.rcd_icon_digest == rcdi_digest(LOGO + b"\0")
    del logos.routes["/logo.png"]
    [failed] = refresh_icons(app.database, app.certificates.icon_fetch)
    assert failed.error is not None
    assert "cannot be used" in failed.error
    assert app.certificates.show_entry("main").entry.rcd_icon_digest == rcdi_digest(LOGO + b"\0")
    # The keyring built from the store signs with the refreshed digest.
    mgmt.api.state.opensti.reload_signing()
    payload = _payload((await sign(mgmt))["identity"])
    assert payload["rcdi"] == {"/icn": rcdi_digest(LOGO + b"\0")}
