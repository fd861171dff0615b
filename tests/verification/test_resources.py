"""ResourceFetcher: rcd logos fetched under the x5u rules (RFC 9795 rcdi), from a real
HTTPS server on 127.0.0.1; the cache answers repeated calls for one logo."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opensti.core.errors import BadIdentityInfo
from opensti.verification.fetch import FetchPolicy
from opensti.verification.resources import ICON_MAX_BYTES, ResourceFetcher
from tests._servers import LocalHTTPServer, Route, TLSFiles, serve
from tests.core.core_support import VECTORS
from tests.verification.test_fetch import _no_proxies, tls  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

LOGO = (VECTORS / "rcd" / "logo.png").read_bytes()
LOCAL = FetchPolicy(allow_private=True)


@pytest.fixture
def https(tls: TLSFiles) -> Iterator[LocalHTTPServer]:  # noqa: F811
    with serve(tls) as server:
        server.routes["/logo.png"] = Route.body(LOGO, content_type="image/png")
        server.routes["/huge.png"] = Route.body(
            b"x" * (ICON_MAX_BYTES + 1), content_type="image/png"
        )
        server.routes["/page.html"] = Route.body(b"<html>", content_type="text/html")
        yield server


async def test_logo_is_fetched_once_then_cached(
    https: LocalHTTPServer,
    tls: TLSFiles,  # noqa: F811
) -> None:
    url = https.url("/logo.png")
    async with ResourceFetcher(LOCAL, verify=str(tls.root_pem)) as fetcher:
        assert await fetcher.fetch(url) == LOGO
        assert await fetcher.fetch(url) == LOGO
    assert https.requests.count("/logo.png") == 1


@pytest.mark.parametrize(
    ("path", "policy", "scheme", "why"),
    [
        ("/logo.png", FetchPolicy(), "https", "non-public"),
        ("/logo.png", LOCAL, "http", "https URL"),
        ("/huge.png", LOCAL, "https", "larger than allowed"),
        ("/page.html", LOCAL, "https", "content type"),
    ],
)
async def test_unsafe_or_unusable_logos_are_refused(
    https: LocalHTTPServer,
    tls: TLSFiles,  # noqa: F811
    path: str,
    policy: FetchPolicy,
    scheme: str,
    why: str,
) -> None:
    url = https.url(path).replace("https://", f"{scheme}://")
    async with ResourceFetcher(policy, verify=str(tls.root_pem)) as fetcher:
        with pytest.raises(BadIdentityInfo, match=why) as info:
            await fetcher.fetch(url)
        assert "rcd resource" in info.value.message
        # A refusal is cached too: asking again does not reach the server.
        before = len(https.requests)
        with pytest.raises(BadIdentityInfo):
            await fetcher.fetch(url)
        assert len(https.requests) == before
