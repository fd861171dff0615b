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
    "AccountBinding",
    "CAProfile",
    "EmptyPayloadSigning",
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
#: How newAccount ties the ACME account to the CA's customer: RFC 8555 7.3.4 External
#: Account Binding, or a ``kid`` member inside the ``jwk`` with an empty payload.
AccountBinding = Literal["eab", "jwk_kid"]
#: What an empty-payload request (newAccount, POST-as-GET) signs: RFC 7515's
#: ``protected "." payload`` or the protected header alone.
EmptyPayloadSigning = Literal["rfc7515", "protected_only"]

_ENCODINGS = ("base64url", "padded")
_FIELDS = ("atc", "tkauth")
_FINGERPRINTS = ("jwk_thumbprint", "spki_sha256")
_BINDINGS = ("eab", "jwk_kid")
_SIGNINGS = ("rfc7515", "protected_only")


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
    account_binding: AccountBinding = "eab"
    empty_payload_signing: EmptyPayloadSigning = "rfc7515"
    #: Answer only the order's first authorization (a single-SPC order has one anyway).
    first_authorization_only: bool = False
    custom: bool = False

    def __post_init__(self) -> None:
        _check_url(self.production_url, "directory URL")
        if self.staging_url is not None:
            _check_url(self.staging_url, "staging directory URL")
        _check_choice(self.identifier_encoding, _ENCODINGS, "identifier_encoding")
        _check_choice(self.tkauth_field, _FIELDS, "tkauth_field")
        _check_choice(self.fingerprint_algorithm, _FINGERPRINTS, "fingerprint_algorithm")
        _check_choice(self.account_binding, _BINDINGS, "account_binding")
        _check_choice(self.empty_payload_signing, _SIGNINGS, "empty_payload_signing")

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

    def knobs(self) -> dict[str, object]:
        """The SHAKEN variant settings alone (no name or URLs): to emulate this CA."""
        skip = {"name", "production_url", "staging_url", "terms_url", "custom"}
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }


def _check_url(url: str, what: str) -> None:
    if not url.startswith(("https://", "http://")):
        raise InvalidInput(f"{what} must be an http(s) URL: {url!r}", value=url)


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise InvalidInput(f"{what} must be one of {', '.join(choices)}: {value!r}", value=value)


# Each setting below names its source.

# Martini Security publishes no ACME reference that we could find (searched: its site,
# docs and issue trackers). The settings below follow the one public client written
# for Martini's STI-CA, github.com/ipifony/vermouth (its ACME client code), which runs
# against these directories; "[client only]" marks a setting that this client shows
# Martini accepts but no Martini document confirms.
MARTINI = CAProfile(
    name="martini",
    # vermouth: martiniProd / martiniStaging constants.
    production_url="https://wfe.prod.martinisecurity.com/v2/acme/directory",
    staging_url="https://wfe.dev.martinisecurity.com/v2/acme/directory",
    # RFC 8555 EAB, HS256 over the JWK, MAC key base64url [client only]; the
    # directory's meta.externalAccountRequired also decides at run time.
    needs_eab=True,
    account_binding="eab",
    # RFC 7515 signatures throughout: vermouth signs with go-jose [client only].
    empty_payload_signing="rfc7515",
    # Padded standard base64 of the TNAuthList DER (base64.StdEncoding) [client only].
    identifier_encoding="padded",
    # tkauth-01 answered {"atc": token}; the challenge is tkauth-type "atc" [client only].
    tkauth_field="atc",
    # "SHA256 AA:BB:.." over the DER SubjectPublicKeyInfo of the account key
    # (getAcmePubKeyFingerprint hashes x509.MarshalPKIXPublicKey) [client only].
    fingerprint_algorithm="spki_sha256",
    # A fresh P-256 key per CSR, not the account key (generateCsr) [client only].
    cert_key_is_account_key=False,
    # newOrder carries notAfter (90 days ahead) and is accepted [client only; whether
    # Martini shortens it is not documented].
    honours_validity_window=True,
)

# Peeringhub, from two public sources that agree: Peeringhub's ACME protocol reference
# (doc.peeringhub.io, "ACME protocol reference": Protocol Overview, Account creation &
# Authorization, Order a new certificate) and the one public client written for it,
# PyPI stir-shaken-toolkit 1.0.2 (acme_core/, stir_shaken_acme/,
# stir_shaken_toolkit/providers/peeringhub.py) as used by shaken-cert-manager 1.0.3.
PEERINGHUB = CAProfile(
    name="peeringhub",
    # providers/peeringhub.py PEERINGHUB_ACME_URLS; docs "Linux Command Line Client".
    production_url="https://stica.peeringhub.io/acme",
    staging_url="https://stica-dev.peeringhub.io/acme",
    # No EAB: newAccount carries a "kid" (a human-readable key identifier) inside the
    # jwk and an empty payload (docs "Account creation & Authorization";
    # acme_core/keys.py jwk(include_kid=True), client.py create_account(None)).
    needs_eab=False,
    account_binding="jwk_kid",
    # Not RFC 7515: an empty payload signs only BASE64URL(protected), no trailing "."
    # (docs "Protocol Overview": "If payload is empty: <base64url-encoded header>";
    # acme_core/keys.py signing_input, profile empty_payload_signing_mode
    # "protected_only").
    empty_payload_signing="protected_only",
    # Padded standard base64 of the TNAuthList DER (docs "Order a new certificate":
    # "MAigBhYEODE4SA=="; PeeringhubProfile.tn_auth_list_encoding "base64").
    identifier_encoding="padded",
    # tkauth-01 answered {"atc": token} (stir_shaken_acme/issuer.py submit_challenge).
    tkauth_field="atc",
    # "SHA256 AA:BB:.." over the account key's DER SubjectPublicKeyInfo
    # (acme_core/keys.py public_key_fingerprint, sent as atc.fingerprint).
    fingerprint_algorithm="spki_sha256",
    # The CSR is signed with the account key (issuer.py: "using ACME account key for
    # certificate CSR"; the manifest records "peeringhub_acme_account_key").
    cert_key_is_account_key=True,
    # notBefore/notAfter are optional newOrder members (docs "Order a new certificate").
    honours_validity_window=True,
    # issuer.py first_authorization_url: only authorizations[0] is answered.
    first_authorization_only=True,
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
