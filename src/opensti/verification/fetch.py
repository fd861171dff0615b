"""Fetching x5u certificate chains: every byte from the network is hostile.

HTTPS only unless allowed, a connect and read timeout and a deadline on the whole
fetch (redirects included, so a peer that trickles bytes cannot hold a call), a cap
on the body size, few redirects, and no connections to loopback, private or
link-local addresses unless allowed (an x5u is chosen by whoever signed the call,
so it must not reach into our own network); IPv6 forms that carry an IPv4 address
(IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4) count as not public
either. The operator may name hosts or networks that are allowed to be private (a
carrier's internal STI-CR, a lab) and hosts that are never fetched. The address is checked after
resolution and the connection is pinned to the checked address, so DNS cannot swap
it between the check and the connect. Proxy variables are ignored for the same
reason: a proxy would connect on our behalf to an address we never checked.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from opensti.core.errors import BadIdentityInfo

__all__ = ["FetchPolicy", "TLSVerify", "X5UFetcher"]

#: True (the system trust store, which honours SSL_CERT_FILE/SSL_CERT_DIR), an SSL
#: context, or the path of a CA file or directory.
TLSVerify = bool | ssl.SSLContext | str | os.PathLike[str]

_ACCEPTED_TYPES = (
    "application/pem-certificate-chain",
    "application/x-pem-file",
    "application/x-x509-ca-cert",
    "application/pkix-cert",
    "application/octet-stream",
    "text/plain",
)


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    allow_http: bool = False
    #: Any host may resolve to a non-public address (tests, demos).
    allow_private: bool = False
    #: Host patterns (fnmatch) or networks (CIDR) that may be non-public.
    private_hosts: tuple[str, ...] = ()
    #: Host patterns (fnmatch) never fetched, redirects included.
    deny_hosts: tuple[str, ...] = ()
    connect_timeout: float = 2.0
    read_timeout: float = 2.0
    #: Bounds the whole fetch; the read timeout alone only bounds the gap between reads.
    total_timeout: float = 5.0
    max_bytes: int = 64 * 1024
    max_redirects: int = 2


def _ssl_context(verify: TLSVerify) -> ssl.SSLContext | bool:
    # httpx deprecates a CA path as ``verify`` and fails late on a Path object, so
    # paths become a context here, where a bad one is a clear error at construction.
    if verify is True:
        return ssl.create_default_context()
    if isinstance(verify, bool | ssl.SSLContext):
        return verify
    path = os.fspath(verify)
    if os.path.isdir(path):
        return ssl.create_default_context(capath=path)
    return ssl.create_default_context(cafile=path)


#: IPv6 prefixes that translate to an IPv4 address (RFC 6052 NAT64, its local-use
#: prefix of RFC 8215): where they lead depends on a translator, not on the address.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return _is_public(str(embedded))
        if int(ip) >> 32 == 0 or any(ip in net for net in _NAT64):
            return False  # IPv4-compatible (::a.b.c.d, deprecated) or NAT64
    return ip.is_global and not ip.is_multicast


def _matches(host: str, patterns: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in patterns)


def _in_networks(address: str, entries: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    for entry in entries:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host pattern, not a network
    return False


class X5UFetcher:
    """Fetches one x5u URL with the policy's limits; raises :class:`BadIdentityInfo`."""

    def __init__(self, policy: FetchPolicy | None = None, *, verify: TLSVerify = True) -> None:
        self.policy = policy or FetchPolicy()
        timeout = httpx.Timeout(
            self.policy.read_timeout, connect=self.policy.connect_timeout, pool=1.0
        )
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            verify=_ssl_context(verify),
            headers={"Accept": "application/pem-certificate-chain, */*;q=0.1"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> X5UFetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _resolve(self, host: str, port: int) -> str:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError) as exc:
            raise BadIdentityInfo(f"x5u host {host!r} does not resolve: {exc}") from None
        addresses = [str(info[4][0]) for info in infos]
        if not self._private_allowed(host):
            private = self.policy.private_hosts
            refused = [a for a in addresses if not _is_public(a) and not _in_networks(a, private)]
            if refused:
                raise BadIdentityInfo(f"x5u host {host!r} resolves to a non-public address")
        return addresses[0]

    def _private_allowed(self, host: str) -> bool:
        return self.policy.allow_private or _matches(host, self.policy.private_hosts)

    def _check_url(self, url: str) -> tuple[str, int]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.policy.allow_http):
            raise BadIdentityInfo(f"x5u must be an https URL: {url[:120]!r}")
        if not parts.hostname or parts.username or parts.password:
            raise BadIdentityInfo(f"x5u is not a plain host URL: {url[:120]!r}")
        if _matches(parts.hostname, self.policy.deny_hosts):
            raise BadIdentityInfo(f"x5u host {parts.hostname} is on the deny list")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise BadIdentityInfo(f"x5u has an invalid port: {url[:120]!r}") from None
        return parts.hostname, port

    def _accepts(self, content_type: str) -> bool:
        """Whether a body of this type may be what we asked for (rcd icons differ)."""
        return content_type in _ACCEPTED_TYPES

    async def fetch(self, url: str) -> bytes:
        """GET ``url`` and return the body (a PEM chain, as yet unparsed)."""
        return (await self.fetch_response(url)).content

    async def fetch_response(self, url: str) -> httpx.Response:
        """Like :meth:`fetch`, keeping the headers (a cache reads Cache-Control/Expires)."""
        try:
            async with asyncio.timeout(self.policy.total_timeout):
                return await self._fetch(url)
        except TimeoutError:
            host = urlsplit(url).hostname
            raise BadIdentityInfo(f"x5u fetch from {host} timed out") from None

    async def _fetch(self, url: str) -> httpx.Response:
        for _ in range(self.policy.max_redirects + 1):
            host, port = self._check_url(url)
            address = await self._resolve(host, port)
            response = await self._get_pinned(url, host, address)
            if response is None:
                raise BadIdentityInfo(f"x5u response from {host} is larger than allowed")
            if response.is_redirect and "location" in response.headers:
                url = str(httpx.URL(url).join(response.headers["location"]))
                continue
            if response.status_code != 200:
                raise BadIdentityInfo(f"x5u fetch answered HTTP {response.status_code}")
            ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype and not self._accepts(ctype):
                raise BadIdentityInfo(f"x5u content type {ctype!r} is not a certificate")
            return response
        raise BadIdentityInfo("x5u redirected too many times")

    async def _get_pinned(self, url: str, host: str, address: str) -> httpx.Response | None:
        target = httpx.URL(url)
        ip = ipaddress.ip_address(address)
        pinned = target.copy_with(host=f"[{address}]" if ip.version == 6 else address)
        request = self._client.build_request(
            "GET", pinned, headers={"Host": target.netloc.decode("ascii")}
        )
        # TLS is checked against the name in the URL, not the address we connect to.
        request.extensions["sni_hostname"] = host
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise BadIdentityInfo(f"x5u fetch from {host} timed out") from None
        except httpx.HTTPError as exc:
            raise BadIdentityInfo(f"x5u fetch from {host} failed: {exc}") from None
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.policy.max_bytes:
                    return None
        except httpx.HTTPError as exc:
            raise BadIdentityInfo(f"x5u fetch from {host} failed: {exc}") from None
        finally:
            await response.aclose()
        return httpx.Response(
            response.status_code, headers=response.headers, content=bytes(body), request=request
        )
