"""Known STI-CAs and how each one reads the SHAKEN ACME profile.

Deployed STI-CAs differ where the standards were written after them: the TNAuthList
identifier encoding (RFC 9448 base64url vs. padded base64), the tkauth-01 response
field (``atc`` vs. RFC 9447's ``tkauth``), the SPC token fingerprint (JWK thumbprint
vs. a hash of the SPKI), and whether the certificate key must be the account key. A
:class:`CAProfile` records those choices so no code path hard-codes one of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from opensti.core.errors import InvalidInput, NotFound

__all__ = [
    "BUILTIN_PROFILES",
    "MARTINI",
    "PEERINGHUB",
    "CAProfile",
    "FingerprintAlgorithm",
    "IdentifierEncoding",
    "TKAuthField",
    "custom_profile",
    "get_profile",
    "sandbox_profile",
]

IdentifierEncoding = Literal["base64url", "padded"]
TKAuthField = Literal["atc", "tkauth"]
FingerprintAlgorithm = Literal["jwk_thumbprint", "spki_sha256"]

_ENCODINGS = ("base64url", "padded")
_FIELDS = ("atc", "tkauth")
_FINGERPRINTS = ("jwk_thumbprint", "spki_sha256")


@dataclass(frozen=True, slots=True)
class CAProfile:
    """One STI-CA: where its ACME directories are and which SHAKEN variants it speaks."""

    name: str
    production_url: str
    staging_url: str | None = None
    needs_eab: bool = True
    terms_url: str | None = None
    identifier_encoding: IdentifierEncoding = "padded"
    cert_key_is_account_key: bool = False
    honours_validity_window: bool = False
    tkauth_field: TKAuthField = "atc"
    fingerprint_algorithm: FingerprintAlgorithm = "jwk_thumbprint"
    custom: bool = False

    def __post_init__(self) -> None:
        _check_url(self.production_url, "directory URL")
        if self.staging_url is not None:
            _check_url(self.staging_url, "staging directory URL")
        _check_choice(self.identifier_encoding, _ENCODINGS, "identifier_encoding")
        _check_choice(self.tkauth_field, _FIELDS, "tkauth_field")
        _check_choice(self.fingerprint_algorithm, _FINGERPRINTS, "fingerprint_algorithm")

    def directory_url(self, *, staging: bool = False) -> str:
        if not staging:
            return self.production_url
        if self.staging_url is None:
            raise InvalidInput(f"CA {self.name!r} has no staging directory", value=self.name)
        return self.staging_url

    @property
    def padded_identifiers(self) -> bool:
        return self.identifier_encoding == "padded"

    def replace(self, **changes: object) -> CAProfile:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _check_url(url: str, what: str) -> None:
    if not url.startswith(("https://", "http://")):
        raise InvalidInput(f"{what} must be an http(s) URL: {url!r}", value=url)


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise InvalidInput(f"{what} must be one of {', '.join(choices)}: {value!r}", value=value)


MARTINI = CAProfile(
    name="martini",
    production_url="https://wfe.prod.martinisecurity.com/v2/acme/directory",
    staging_url="https://wfe.dev.martinisecurity.com/v2/acme/directory",
    needs_eab=True,
)

PEERINGHUB = CAProfile(
    name="peeringhub",
    production_url="https://stica.peeringhub.io/acme",
    staging_url="https://stica-dev.peeringhub.io/acme",
    needs_eab=True,
    cert_key_is_account_key=True,
)

#: The CAs opensti knows by name; the sandbox is added at run time by its URL.
BUILTIN_PROFILES: tuple[CAProfile, ...] = (MARTINI, PEERINGHUB)


def sandbox_profile(directory_url: str, **settings: object) -> CAProfile:
    """The local sandbox CA; ``settings`` select which deployed CA it emulates."""
    base = {
        "name": "sandbox",
        "production_url": directory_url,
        "staging_url": directory_url,
        "needs_eab": True,
        "honours_validity_window": True,
    }
    return CAProfile(**{**base, **settings})  # type: ignore[arg-type]


def custom_profile(name: str, directory_url: str, **settings: object) -> CAProfile:
    """Any other ACME STI-CA, by its directory URL (ATIS defaults unless told)."""
    if not name.strip():
        raise InvalidInput("a CA needs a name")
    return CAProfile(name=name, production_url=directory_url, custom=True, **settings)  # type: ignore[arg-type]


def get_profile(name: str, extra: tuple[CAProfile, ...] = ()) -> CAProfile:
    """A CA by name among ``extra`` (custom and sandbox CAs) and the built-in ones."""
    for profile in (*extra, *BUILTIN_PROFILES):
        if profile.name.casefold() == name.casefold():
            return profile
    known = ", ".join(p.name for p in (*extra, *BUILTIN_PROFILES))
    raise NotFound(f"unknown CA {name!r} (known: {known})", value=name)
