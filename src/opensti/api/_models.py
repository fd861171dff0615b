"""Request and response bodies of ``/api/v1``, as the OpenAPI document shows them.

Secrets only ever appear in request models, as :class:`SecretStr` (write-only): no
response model has a field that could hold an EAB HMAC key, an STI-PA password, a
private key or an SPC token. Responses are the services' own result dataclasses
(``AccountInfo``, ``EntryInfo``...) where they exist, so the documented shape cannot
drift from what the services return; the models below cover the rest.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from opensti.calls import CertificateInfo as SigningCertificate
from opensti.core.bounds import MAX_TIME
from opensti.lifecycle.acquire import CertificateInfo
from opensti.store import Role, RoutingChange

MAX_BATCH = 1000

Name = Annotated[str, Field(min_length=1, max_length=64)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
TN = Annotated[str, Field(min_length=1, max_length=256)]
#: Calling-number prefixes (E.164 digits; checked by the store, which names the problem).
Prefixes = Annotated[tuple[Annotated[str, Field(max_length=32)], ...], Field(max_length=1000)]
Attest = Annotated[str, Field(max_length=1)]
RCDName = Annotated[str, Field(min_length=1, max_length=256)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- CAs and accounts ---------------------------------------------------------------


class CAIn(_Request):
    name: Name
    directory_url: Url
    staging_directory_url: Url | None = None
    needs_eab: bool = False
    terms_url: Url | None = None
    identifier_encoding: str = "padded"
    tkauth_field: str = "atc"
    fingerprint_algorithm: str = "jwk_thumbprint"
    cert_key_is_account_key: bool = False
    honours_validity: bool = False


class AccountIn(_Request):
    """Register a new ACME account (the key is made here and never leaves the store)."""

    ca: Name
    email: Annotated[str, Field(max_length=254)]
    agree_tos: bool
    staging: bool = False
    eab_kid: Annotated[str | None, Field(max_length=256)] = None
    eab_hmac_key: Annotated[SecretStr | None, Field(max_length=1024)] = None
    name: Name | None = None


class AccountImportIn(_Request):
    """An account registered elsewhere: its key PEM (write-only) and optional URL."""

    ca: Name
    key_pem: Annotated[SecretStr, Field(max_length=16384)]
    account_url: Url | None = None
    staging: bool = False
    name: Name | None = None


class StiPaIn(_Request):
    user_id: Annotated[str, Field(min_length=1, max_length=1024)]
    password: Annotated[SecretStr, Field(min_length=1, max_length=1024)]
    staging: bool = False
    base_url: Url | None = None


# -- entries and certificates -------------------------------------------------------


class EntryIn(_Request):
    name: Name
    spc: Annotated[str, Field(min_length=1, max_length=16)]
    acme_account: Name
    stipa_account_id: Annotated[str | None, Field(max_length=16)] = None
    crl_url: Url | None = None
    #: An SPC token brought from elsewhere: the JWT, or a token file's content.
    token: Annotated[SecretStr | None, Field(max_length=65536)] = None
    token_file: Annotated[SecretStr | None, Field(max_length=65536)] = None
    default_signer: bool = False
    prefixes: Prefixes = ()
    attest: Attest | None = None
    enabled: bool = True
    #: Rich Call Data its calls assert (RFC 9795): display name and https logo URL
    #: (fetched now for its rcdi digest).
    rcd_name: RCDName | None = None
    rcd_icon: Url | None = None


class EntryChangeIn(_Request):
    """Which calls the entry signs and how; a field left out stays as it is.

    ``prefixes`` replaces the entry's list (``[]`` clears it); ``rcd_name`` and
    ``rcd_icon`` set the name and logo its calls assert (``""`` removes one).
    """

    default_signer: bool | None = None
    prefixes: Prefixes | None = None
    attest: Attest | None = None
    enabled: bool | None = None
    rcd_name: Annotated[str | None, Field(max_length=256)] = None
    rcd_icon: Annotated[str | None, Field(max_length=2048)] = None

    def routing(self) -> RoutingChange:
        return RoutingChange(
            default_signer=self.default_signer,
            add_prefixes=tuple(self.prefixes or ()),
            clear_prefixes=self.prefixes is not None,
            attest=self.attest,
            enabled=self.enabled,
            rcd_name=self.rcd_name,
            rcd_icon=self.rcd_icon,
        )


class AcquisitionOut(_Response):
    entry: str
    spc: str
    certificate: CertificateInfo
    superseded_id: int | None
    steps: list[str]
    notes: list[str] = []


# -- tokens and settings ------------------------------------------------------------


class TokenIn(_Request):
    name: Name
    role: Role
    expires_at: dt.datetime | None = None


class TokenOut(_Response):
    name: str
    role: Role
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked: bool


class TokenCreated(TokenOut):
    token: str = Field(description="The bearer token: shown this once, only its hash is kept")


class SettingIn(_Request):
    """Either a JSON ``value`` or a write-only ``secret``."""

    value: Any = None
    secret: Annotated[SecretStr | None, Field(max_length=16384)] = None


class SettingOut(_Response):
    key: str
    value: Any
    secret_set: bool


# -- signing and verification -------------------------------------------------------


class SignIn(_Request):
    orig: TN
    dest: TN | Annotated[list[TN], Field(min_length=1, max_length=64)]
    attest: Annotated[str | None, Field(max_length=1)] = None
    origid: Annotated[str | None, Field(max_length=256)] = None
    entry: Name | None = None
    call_id: Annotated[str | None, Field(max_length=255)] = None
    iat: Annotated[int | None, Field(ge=0, le=MAX_TIME)] = None
    #: A div PASSporT (RFC 8946) instead: the number the call was diverted from.
    div: TN | None = None
    #: Rich Call Data (RFC 9795) added to the SHAKEN PASSporT instead of the entry's:
    #: name, logo URL (fetched for its rcdi digest, cached) and call reason.
    rcd_name: RCDName | None = None
    rcd_icon: Url | None = None
    rcd_reason: RCDName | None = None


class SignOut(_Response):
    identity: str
    entry: str
    x5u: str
    #: The attestation signed, and whether the request gave it or the entry's default;
    #: None for a div PASSporT, which carries no attestation (RFC 8946).
    attest: str | None = None
    attest_from: str | None = None


class VerifyIn(_Request):
    identity: Annotated[str | None, Field(max_length=16384)] = None
    identities: Annotated[list[str] | None, Field(max_length=8)] = None
    from_: TN = Field(alias="from")
    to: TN | Annotated[list[TN], Field(min_length=1, max_length=64)]
    now: Annotated[int | None, Field(ge=0, le=MAX_TIME)] = None
    call_id: Annotated[str | None, Field(max_length=255)] = None


class VerifyOut(_Response):
    verstat: str
    sip_code: int | None
    reason: str
    attest: str | None
    orig: str | None
    dest: list[str] | None
    origid: str | None
    iat: int | None
    x5u: str | None
    result_class: str
    #: With div PASSporTs: the SHAKEN PASSporT's own result and each link of the chain.
    base: dict[str, Any] | None = None
    div: list[dict[str, Any]] | None = None
    #: With rcd claims: whether the name and logo are verified, and why not.
    rcd: dict[str, Any] | None = None


class Problem(_Response):
    type: str
    title: str
    detail: str
    status: int


class SignBatchIn(_Request):
    requests: Annotated[list[SignIn], Field(max_length=MAX_BATCH)]


class SignBatchOut(_Response):
    results: list[SignOut | Problem]


class VerifyBatchIn(_Request):
    requests: Annotated[list[VerifyIn], Field(max_length=MAX_BATCH)]


class VerifyBatchOut(_Response):
    results: list[VerifyOut | Problem]


# -- the call log -------------------------------------------------------------------


class CallOut(_Response):
    id: int
    at: dt.datetime
    call_id: str
    direction: str
    action: str
    from_: str | None = Field(alias="from")
    to: str | None
    attest: str | None
    verstat: str | None
    sip_code: int | None
    reason: str | None
    certificate_id: int | None
    x5u: str | None
    #: The caller's name and logo URL, only for a call whose rcd claims verified.
    rcd_name: str | None = None
    rcd_icon: str | None = None


class CallPageOut(_Response):
    calls: list[CallOut]
    next_cursor: str | None


class CallRecordOut(CallOut):
    certificate: SigningCertificate | None


class CallDetailOut(_Response):
    call_id: str
    records: list[CallRecordOut]
