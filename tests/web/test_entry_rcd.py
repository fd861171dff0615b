"""The entry page's Signing form (shared with Add entry) sets the caller name and logo
the entry's calls assert (RFC 9795); the logo is fetched from a real HTTPS server on
127.0.0.1 when saved, and an unusable one is refused in the form, input kept."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from opensti.core.rcd import rcdi_digest
from opensti.store import get_entry
from opensti.verification import FetchPolicy
from opensti.verification.resources import fetch_once
from tests._servers import Route, make_tls_files, serve
from tests.core.core_support import VECTORS
from tests.lifecycle.acquire_support import World, world
from tests.sandbox.conftest import clock, sandbox_factory
from tests.web.test_pages import post, ui

__all__ = ["clock", "sandbox_factory", "ui", "world"]

pytestmark = pytest.mark.integration

LOGO = (VECTORS / "rcd" / "logo.png").read_bytes()


@pytest.fixture
def logo(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A logo on 127.0.0.1, fetched by the app's fetcher with loopback allowed and the
    test root trusted."""
    tls = make_tls_files(tmp_path / "logo-tls", label="logos")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.root_pem))
    world.app.certificates.icon_fetch = partial(fetch_once, policy=FetchPolicy(allow_private=True))
    with serve(tls) as server:
        server.routes["/logo.png"] = Route.body(LOGO, content_type="image/png")
        yield server.url("/logo.png")


async def test_signing_form_sets_and_clears_the_caller_name_and_logo(
    ui: httpx.AsyncClient, world: World, logo: str
) -> None:
    account = world.ready()
    assert 'name="rcd_name"' in (await ui.get("/certificates/new")).text
    world.app.certificates.add_entry(
        name="east", spc="123H", acme_account=account, stipa_account_id="123H"
    )
    page, action = "/certificates/east", "/certificates/east/signing"
    saved = await post(ui, page, action, attest="B", rcd_name="Example <Bank>", rcd_icon=logo)
    assert saved.status_code == 303, saved.text
    shown = (await ui.get(page)).text
    assert "Example &lt;Bank&gt;" in shown
    assert f'value="{logo}"' in shown
    assert rcdi_digest(LOGO) in shown
    with world.app.database.read_session() as session:
        east = get_entry(session, "east")
        assert (east.rcd_name, east.rcd_icon_url) == ("Example <Bank>", logo)

    refused = await post(ui, page, action, attest="B", rcd_icon="http://127.0.0.1/logo.png")
    assert refused.status_code == 400
    assert "the rcd icon must be an https URL" in refused.text
    assert 'value="http://127.0.0.1/logo.png"' in refused.text

    cleared = await post(ui, page, action, attest="B", rcd_name="", rcd_icon="")
    assert cleared.status_code == 303
    with world.app.database.read_session() as session:
        east = get_entry(session, "east")
        assert (east.rcd_name, east.rcd_icon_url, east.rcd_icon_digest) == (None, None, None)
