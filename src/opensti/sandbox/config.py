"""Settings of one sandbox instance, read once at the edge (CLI or test) and passed down.

A :class:`CAProfile` captures what real STI-CAs disagree on, so a client can be tested
against each behaviour without a contract with each CA:

``atis`` (default)
    padded base64 identifier (ATIS-1000080 examples, iconectiv), certificate key may
    differ from the account key, EAB required, ``notBefore``/``notAfter`` honoured.
``rfc9448``
    base64url identifier without padding, only the ``tkauth`` challenge field.
``martini``
    EAB, padded identifier, ``atc`` field, SPKI fingerprint, 90 days: what the public
    Martini client (github.com/ipifony/vermouth) does; Martini documents none of it.
``peeringhub``
    what Peeringhub's ACME reference (doc.peeringhub.io) and its public client (PyPI
    stir-shaken-toolkit 1.0.2) show: no EAB but a key id inside the newAccount ``jwk``
    (empty payload), an empty payload signed over the protected header alone (RFC 7515
    signatures are accepted too), the SPKI fingerprint, padded identifier, ``atc``
    field, certificate key = account key, and a year of validity (the client refuses
    certificates with less than 14 days left).

Every profile copies the CSR's subject into the certificate (``subject="csr"``; a
subject with control or other non-printable characters is refused with ``badCSR``);
``subject="fixed"`` issues ``C=US, O=opensti sandbox SP, CN=SHAKEN <SPC>`` instead.

Providers file (TOML or JSON, ``--providers FILE``)::

    [[providers]]
    account_id = "123H"          # the primary OCN, used in /api/v1/account/{id}/token
    name = "Demo carrier"
    spcs = ["123H", "456J"]
    [[providers.users]]
    user_id = "demo"
    password = "demo-password"   # hashed with scrypt before it is stored
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from opensti.core.errors import InvalidInput

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_PROVIDER",
    "PROFILES",
    "PROFILE_SETTINGS",
    "SETTING_CHOICES",
    "APIUserConfig",
    "CAProfile",
    "ProviderConfig",
    "SandboxConfig",
    "default_data_dir",
    "describe_profile",
    "load_providers",
    "parse_duration",
]

IdentifierEncoding = Literal["base64url", "padded"]
CertKeyRule = Literal["any", "account", "separate"]
FingerprintAlgorithm = Literal["jwk_thumbprint", "spki_sha256"]
AccountBinding = Literal["eab", "jwk_kid"]
EmptyPayloadSigning = Literal["rfc7515", "protected_only"]
SubjectRule = Literal["csr", "fixed"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``"7d"``, ``"2m"``, ``"90s"``, ``"1.5h"`` or plain seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise InvalidInput(f"not a positive duration (e.g. 7d, 2m, 90s): {text!r}", value=text)
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True, slots=True)
class CAProfile:
    """The STI-CA behaviours that differ between deployed SHAKEN CAs."""

    name: str = "atis"
    identifier_encoding: IdentifierEncoding = "padded"
    #: "any": separate or same key (ATIS); "account": must be the account key
    #: (Peeringhub); "separate": must not be the account key.
    cert_key: CertKeyRule = "any"
    eab_required: bool = True
    honour_validity: bool = True
    tkauth_fields: tuple[str, ...] = ("tkauth", "atc")
    fingerprint: FingerprintAlgorithm = "jwk_thumbprint"
    #: "eab": RFC 8555 externalAccountBinding; "jwk_kid": a ``kid`` member inside the
    #: newAccount ``jwk`` names the customer (an ``add-eab`` kid; any kid when
    #: ``eab_required`` is off), and the payload may be empty.
    account_binding: AccountBinding = "eab"
    #: "protected_only": an empty payload may also be signed over the protected header
    #: alone (no trailing "."), besides RFC 7515's input.
    empty_payload_signature: EmptyPayloadSigning = "rfc7515"
    #: "csr": the certificate's subject is the CSR's; "fixed": C/O/CN=SHAKEN <SPC>.
    subject: SubjectRule = "csr"
    #: Certificate lifetime unless the order asks for another (``--cert-validity``).
    cert_validity: dt.timedelta = dt.timedelta(days=7)

    def with_options(self, **options: Any) -> CAProfile:
        return replace(self, **{k: v for k, v in options.items() if v is not None})


PROFILES: dict[str, CAProfile] = {
    "atis": CAProfile(),
    "rfc9448": CAProfile(
        name="rfc9448", identifier_encoding="base64url", tkauth_fields=("tkauth",)
    ),
    "peeringhub": CAProfile(
        name="peeringhub",
        cert_key="account",
        tkauth_fields=("atc",),
        fingerprint="spki_sha256",
        account_binding="jwk_kid",
        empty_payload_signature="protected_only",
        # Peeringhub's lifetime is not published; its client renews 45 days ahead and
        # refuses less than 14 days (shaken-cert-manager defaults), so a year.
        cert_validity=dt.timedelta(days=365),
    ),
    # As the Martini client vermouth (github.com/ipifony/vermouth) shows that CA: EAB,
    # padded identifier, "atc", SPKI fingerprint, a separate certificate key (the
    # account key is not refused: unknown), notAfter 90 days ahead.
    "martini": CAProfile(
        name="martini",
        tkauth_fields=("atc",),
        fingerprint="spki_sha256",
        cert_validity=dt.timedelta(days=90),
    ),
}

#: The values of each choice setting, for the command line and its errors.
SETTING_CHOICES: dict[str, tuple[str, ...]] = {
    "identifier_encoding": get_args(IdentifierEncoding),
    "cert_key": get_args(CertKeyRule),
    "account_binding": get_args(AccountBinding),
    "empty_payload_signature": get_args(EmptyPayloadSigning),
    "fingerprint": get_args(FingerprintAlgorithm),
    "subject": get_args(SubjectRule),
}

#: The settings a profile is made of, as ``opensti sandbox --help`` lists them.
PROFILE_SETTINGS = (
    "identifier_encoding",
    "cert_key",
    "eab_required",
    "account_binding",
    "empty_payload_signature",
    "honour_validity",
    "tkauth_fields",
    "fingerprint",
    "subject",
    "cert_validity",
)


def describe_profile(profile: CAProfile) -> str:
    """One line per profile for help texts: ``name: setting=value, ...``."""

    def shown(value: Any) -> str:
        if isinstance(value, tuple):
            return "+".join(value)
        if isinstance(value, dt.timedelta):
            return f"{value.days}d" if value.days else f"{int(value.total_seconds())}s"
        return str(value).lower() if isinstance(value, bool) else str(value)

    settings = ", ".join(f"{k}={shown(getattr(profile, k))}" for k in PROFILE_SETTINGS)
    return f"{profile.name}: {settings}"


@dataclass(frozen=True, slots=True)
class APIUserConfig:
    user_id: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A service provider registered at the STI-PA: account id (primary OCN) and SPCs."""

    account_id: str
    spcs: tuple[str, ...]
    users: tuple[APIUserConfig, ...] = ()
    name: str = ""


#: The demo password of the default provider; documented in ``opensti sandbox --help``.
DEMO_PASSWORD = "demo-password"  # noqa: S105  (a published demo credential)
DEMO_PROVIDER = ProviderConfig(
    account_id="123H",
    spcs=("123H", "456J"),
    users=(APIUserConfig("demo", DEMO_PASSWORD),),
    name="Demo carrier",
)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "opensti" / "sandbox"


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    http: bool = False
    profile: CAProfile = field(default_factory=CAProfile)
    #: Overrides the profile's ``cert_validity`` when set.
    cert_validity: dt.timedelta | None = None
    spc_token_validity: dt.timedelta = dt.timedelta(days=1)
    access_token_validity: dt.timedelta = dt.timedelta(hours=1)
    #: Share of CA and STI-PA requests answered with 503, from 0 to 1.
    fail_rate: float = 0.0
    providers: tuple[ProviderConfig, ...] = ()
    demo_provider: bool = True
    #: When set, /admin requests need ``Authorization: Bearer <token>`` and may come
    #: from any address; when unset they are accepted from loopback only.
    admin_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_rate <= 1.0:
            raise InvalidInput(f"fail rate must be between 0 and 1: {self.fail_rate}")

    @property
    def validity(self) -> dt.timedelta:
        return self.cert_validity or self.profile.cert_validity

    @property
    def all_providers(self) -> tuple[ProviderConfig, ...]:
        return ((DEMO_PROVIDER,) if self.demo_provider else ()) + self.providers


def _provider(raw: Any) -> ProviderConfig:
    try:
        users = tuple(
            APIUserConfig(str(u["user_id"]), str(u["password"])) for u in raw.get("users", [])
        )
        spcs = tuple(str(s) for s in raw.get("spcs") or [raw["account_id"]])
        return ProviderConfig(str(raw["account_id"]), spcs, users, str(raw.get("name", "")))
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"provider entry is incomplete: {exc}") from None


def load_providers(data: bytes, *, toml: bool) -> tuple[ProviderConfig, ...]:
    """Parse a providers file (see the module docstring)."""
    try:
        document = tomllib.loads(data.decode()) if toml else json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"providers file does not parse: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("providers"), list):
        raise InvalidInput("providers file needs a top-level 'providers' list")
    return tuple(_provider(raw) for raw in document["providers"])
