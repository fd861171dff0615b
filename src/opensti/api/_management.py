"""CAs, ACME accounts, STI-PA credentials, certificate entries, certificates, tokens, settings.

Thin over :class:`opensti.lifecycle.accounts.AccountService` and
:class:`opensti.lifecycle.acquire.CertificateService`: the routes translate bodies,
and the services do the checking. Handlers are plain functions (run in the thread
pool) because the services talk to CAs and the STI-PA synchronously.
"""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Response, status

from opensti.api._auth import require
from opensti.api._context import Context, RowID
from opensti.api._models import (
    AccountImportIn,
    AccountIn,
    AcquisitionOut,
    CAIn,
    EntryChangeIn,
    EntryIn,
    SettingIn,
    SettingOut,
    StiPaIn,
    TokenCreated,
    TokenIn,
    TokenOut,
)
from opensti.calls import CertificateInfo as SigningCertificate
from opensti.calls import describe_certificate
from opensti.core.errors import InvalidInput, NoActiveCertificate
from opensti.lifecycle.accounts import AccountInfo, CAInfo, StiPaInfo
from opensti.lifecycle.acquire import CertificateInfo, EntryDetail, EntryInfo, RemovedEntry
from opensti.lifecycle.reconcile import RENEW_BEFORE_KEY, set_renew_before
from opensti.store import (
    Role,
    RoutingChange,
    Secret,
    active_certificate,
    create_api_token,
    get_certificate,
    get_entry,
    get_secret_setting,
    get_setting,
    list_api_tokens,
    put_secret_setting,
    put_setting,
    revoke_api_token,
)

__all__ = ["router"]

PEM_CHAIN = "application/pem-certificate-chain"

router = APIRouter()
ReadOnly = [Depends(require(Role.READ_ONLY))]
Operator = [Depends(require(Role.OPERATOR))]
Admin = [Depends(require(Role.ADMIN))]
Created = status.HTTP_201_CREATED


def _secret(value: object) -> Secret | None:
    reveal = getattr(value, "get_secret_value", None)
    return None if reveal is None else Secret.from_text(reveal())


# -- CAs ------------------------------------------------------------------------------


@router.get("/cas", tags=["accounts"], dependencies=ReadOnly)
def list_cas(ctx: Context) -> list[CAInfo]:
    """Built-in CA profiles and custom CAs."""
    return ctx.app.accounts.list_cas()


@router.post("/cas", tags=["accounts"], dependencies=Admin, status_code=Created)
def add_ca(ctx: Context, body: CAIn) -> CAInfo:
    """A custom CA by its ACME directory URL."""
    fields = body.model_dump(exclude={"name", "directory_url"})
    return ctx.app.accounts.add_ca(body.name, body.directory_url, **fields)


@router.delete("/cas/{name}", tags=["accounts"], dependencies=Admin)
def remove_ca(ctx: Context, name: str) -> CAInfo:
    """Forget a custom CA; refused with 409 naming the accounts that use it."""
    return ctx.app.accounts.remove_ca(name)


# -- ACME accounts ---------------------------------------------------------------------


@router.get("/accounts", tags=["accounts"], dependencies=ReadOnly)
def list_accounts(ctx: Context) -> list[AccountInfo]:
    return ctx.app.accounts.list_accounts()


@router.get("/accounts/{name}", tags=["accounts"], dependencies=ReadOnly)
def show_account(ctx: Context, name: str) -> AccountInfo:
    """The account URL, and the thumbprint and fingerprint to give the STI-PA."""
    return ctx.app.accounts.show_account(name)


@router.delete("/accounts/{name}", tags=["accounts"], dependencies=Admin)
def remove_account(ctx: Context, name: str) -> AccountInfo:
    """Forget an ACME account; refused with 409 naming the entries that use it."""
    return ctx.app.accounts.remove_account(name)


@router.post("/accounts", tags=["accounts"], dependencies=Admin, status_code=Created)
def add_account(ctx: Context, body: AccountIn) -> AccountInfo:
    """Register a new account at the CA (with external account binding when given)."""
    return ctx.app.accounts.add_account(
        body.ca,
        email=body.email,
        agree_tos=body.agree_tos,
        staging=body.staging,
        eab_kid=body.eab_kid,
        eab_hmac_key=_secret(body.eab_hmac_key),
        name=body.name,
    )


@router.post("/accounts/import", tags=["accounts"], dependencies=Admin, status_code=Created)
def import_account(ctx: Context, body: AccountImportIn) -> AccountInfo:
    """An account registered elsewhere, found at the CA by its key."""
    key = _secret(body.key_pem)
    assert key is not None
    return ctx.app.accounts.import_account(
        body.ca, key, account_url=body.account_url, staging=body.staging, name=body.name
    )


# -- STI-PA ----------------------------------------------------------------------------


@router.get("/stipa", tags=["stipa"], dependencies=ReadOnly)
def list_stipa(ctx: Context) -> list[StiPaInfo]:
    return ctx.app.accounts.list_stipa()


@router.put("/stipa/{account_id}", tags=["stipa"], dependencies=Admin)
def set_stipa(ctx: Context, account_id: str, body: StiPaIn) -> StiPaInfo:
    """Create or replace one STI-PA account's API credentials (the password is write-only)."""
    password = _secret(body.password)
    assert password is not None
    return ctx.app.accounts.set_stipa(
        account_id=account_id,
        user_id=body.user_id,
        password=password,
        staging=body.staging,
        base_url=body.base_url,
    )


@router.post("/stipa/{account_id}/test", tags=["stipa"], dependencies=Admin)
def check_stipa(ctx: Context, account_id: str, staging: bool | None = None) -> StiPaInfo:
    """Log in with the stored credentials: 200, or the STI-PA's refusal as a 502."""
    return ctx.app.accounts.test_stipa(account_id, staging=staging)


# -- certificate entries -----------------------------------------------------------------


@router.get("/entries", tags=["certificates"], dependencies=ReadOnly)
def list_entries(ctx: Context) -> list[EntryInfo]:
    return ctx.app.certificates.list_entries()


@router.post("/entries", tags=["certificates"], dependencies=Admin, status_code=Created)
def add_entry(ctx: Context, body: EntryIn) -> EntryInfo:
    """A certificate entry for one SPC, with an STI-PA account or an SPC token brought here."""
    token_file = _secret(body.token_file)
    token = _secret(body.token)
    entry = ctx.app.certificates.add_entry(
        name=body.name,
        spc=body.spc,
        acme_account=body.acme_account,
        stipa_account_id=body.stipa_account_id,
        crl_url=body.crl_url,
        token_file=None if token_file is None else token_file.reveal(),
        token=None if token is None else token.reveal_text(),
        routing=RoutingChange(
            default_signer=body.default_signer,
            add_prefixes=body.prefixes,
            attest=body.attest,
            enabled=body.enabled,
            rcd_name=body.rcd_name,
            rcd_icon=body.rcd_icon,
        ),
    )
    ctx.reload_signing()
    return entry


@router.patch("/entries/{name}", tags=["certificates"], dependencies=Admin)
def change_entry(ctx: Context, name: str, body: EntryChangeIn) -> EntryInfo:
    """Change which calls the entry signs (default signer, prefixes), its default
    attestation, the name and logo its calls assert, or enable/disable it. Refused
    with 409 naming the other entry when a prefix is taken; making it the default moves
    the role (``notes`` says from whom). A logo is fetched first (400 if unusable)."""
    entry = ctx.app.certificates.change_entry(name, body.routing())
    ctx.reload_signing()
    return entry


@router.delete("/entries/{name}", tags=["certificates"], dependencies=Admin)
def remove_entry(ctx: Context, name: str, revoke: bool = False) -> RemovedEntry:
    """Remove the entry; its published chains stay on the STI-CR until they expire
    (``revoke=true`` revokes them at the CA first). Refused for the default signer
    while other entries remain."""
    removed = ctx.app.certificates.remove_entry(name, revoke=revoke)
    ctx.reload_signing()
    return removed


@router.get("/entries/{name}", tags=["certificates"], dependencies=ReadOnly)
def show_entry(ctx: Context, name: str) -> EntryDetail:
    """The entry, its certificates (newest first) and its recent lifecycle events."""
    return ctx.app.certificates.show_entry(name)


@router.get("/entries/{name}/certificates", tags=["certificates"], dependencies=ReadOnly)
def list_entry_certificates(ctx: Context, name: str) -> list[CertificateInfo]:
    return ctx.app.certificates.show_entry(name, events=1).certificates


@router.post("/entries/{name}/request", tags=["certificates"], dependencies=Operator)
def request_certificate(ctx: Context, name: str) -> AcquisitionOut:
    """Get a new certificate for the entry now (SPC token, ACME order, validation) and
    make it the active one; signing uses it from the next call."""
    result = ctx.app.certificates.request_certificate(name)
    ctx.reload_signing()
    return AcquisitionOut.model_validate(result.to_dict())


@router.get(
    "/entries/{name}/chain",
    tags=["certificates"],
    dependencies=ReadOnly,
    response_class=Response,
    responses={200: {"content": {PEM_CHAIN: {}}}},
)
def export_chain(ctx: Context, name: str) -> Response:
    """The active certificate's chain as PEM (the private key never leaves by the API)."""
    with ctx.database.read_session() as session:
        cert = active_certificate(session, get_entry(session, name).id)
        if cert is None or cert.chain_pem is None:
            raise NoActiveCertificate(f"entry {name!r} has no active certificate", value=name)
        return Response(cert.chain_pem, media_type=PEM_CHAIN)


# -- certificates ---------------------------------------------------------------------


@router.get("/certificates/{certificate_id}", tags=["certificates"], dependencies=ReadOnly)
def show_certificate(ctx: Context, certificate_id: RowID) -> SigningCertificate:
    """Subject, SPC, issuer, validity, fingerprint and x5u of one certificate."""
    with ctx.database.read_session() as session:
        return describe_certificate(get_certificate(session, certificate_id))


@router.get(
    "/certificates/{certificate_id}/chain.pem",
    tags=["certificates"],
    dependencies=ReadOnly,
    response_class=Response,
    responses={200: {"content": {PEM_CHAIN: {}}}},
)
def certificate_chain(ctx: Context, certificate_id: RowID) -> Response:
    with ctx.database.read_session() as session:
        cert = get_certificate(session, certificate_id)
        if cert.chain_pem is None:
            raise NoActiveCertificate(f"certificate {certificate_id} has not been issued yet")
        return Response(cert.chain_pem, media_type=PEM_CHAIN)


# -- API tokens -----------------------------------------------------------------------


def _token_out(row: object) -> dict[str, object]:
    names = ("name", "role", "created_at", "expires_at", "last_used_at", "revoked")
    return {name: getattr(row, name) for name in names}


@router.get("/tokens", tags=["admin"], dependencies=Admin)
def list_tokens(ctx: Context) -> list[TokenOut]:
    with ctx.database.read_session() as session:
        return [TokenOut.model_validate(_token_out(row)) for row in list_api_tokens(session)]


@router.post("/tokens", tags=["admin"], dependencies=Admin, status_code=Created)
def create_token(ctx: Context, body: TokenIn) -> TokenCreated:
    """A new bearer token; its value is in this response only."""
    expires_at = body.expires_at
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=dt.UTC)
        if expires_at <= ctx.now():
            raise InvalidInput("the token's expiry must be in the future")
    with ctx.database.session() as session:
        row, value = create_api_token(
            session, name=body.name, role=body.role, expires_at=expires_at
        )
        fields = _token_out(row)
    return TokenCreated.model_validate({**fields, "token": value.reveal_text()})


@router.delete("/tokens/{name}", tags=["admin"], dependencies=Admin)
def revoke_token(ctx: Context, name: str) -> TokenOut:
    with ctx.database.session() as session:
        return TokenOut.model_validate(_token_out(revoke_api_token(session, name)))


# -- settings -------------------------------------------------------------------------


def _setting(ctx: Context, key: str) -> SettingOut:
    with ctx.database.read_session() as session:
        value = get_setting(session, key)
        secret_set = get_secret_setting(session, ctx.app.box, key) is not None
    return SettingOut(key=key, value=value, secret_set=secret_set)


@router.get("/settings/{key}", tags=["admin"], dependencies=Admin)
def read_setting(ctx: Context, key: str) -> SettingOut:
    """A setting's value; a secret one only says that it is set."""
    return _setting(ctx, key)


@router.put("/settings/{key}", tags=["admin"], dependencies=Admin)
def write_setting(ctx: Context, key: str, body: SettingIn) -> SettingOut:
    if (body.secret is None) == (body.value is None):
        raise InvalidInput("give a setting either a value or a secret")
    with ctx.database.session() as session:
        secret = _secret(body.secret)
        if secret is not None:
            put_secret_setting(session, ctx.app.box, key, secret)
        elif key == RENEW_BEFORE_KEY:
            set_renew_before(session, body.value)  # checked: the loop reads it
        else:
            put_setting(session, key, body.value)
    return _setting(ctx, key)
