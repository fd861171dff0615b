"""``opensti sandbox``: run the local STI-PA + STI-CA, and manage its providers and EAB keys.

``opensti sandbox`` serves both roles on one port (HTTPS with a generated local root
unless ``--http``). The demo provider is account ``123H`` with SPCs ``123H`` and
``456J`` and STI-PA API user ``demo`` / ``demo-password``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from opensti.cli._app import app, console, group, print_json, read_input_file
from opensti.core.errors import InvalidInput
from opensti.sandbox.config import (
    DEMO_PASSWORD,
    PROFILES,
    SETTING_CHOICES,
    APIUserConfig,
    CAProfile,
    ProviderConfig,
    SandboxConfig,
    default_data_dir,
    describe_profile,
    load_providers,
    parse_duration,
)
from opensti.sandbox.server import STIPA_CERT_FILE, TRUST_ANCHORS_FILE, serve
from opensti.sandbox.state import Sandbox

_PROFILE_HELP = "\n\n".join(describe_profile(p) for p in PROFILES.values())

sandbox_app = group(
    help=(
        "A local STI-PA and STI-CA (ACME + EAB + tkauth-01) for offline tests. "
        f"Demo STI-PA user: demo / {DEMO_PASSWORD} (account 123H, SPCs 123H and 456J)."
        "\n\nCA profiles (--profile) and their settings; each setting has its own option "
        f"below that overrides the profile's:\n\n{_PROFILE_HELP}"
    ),
    invoke_without_command=True,
)
app.add_typer(sandbox_app, name="sandbox")

DataDir = Annotated[
    Path | None,
    typer.Option(help="State directory (SQLite, keys, TLS root). Default: ~/.local/share/..."),
]


def _config(data_dir: Path | None, **options: Any) -> SandboxConfig:
    return SandboxConfig(data_dir=data_dir or default_data_dir(), **options)


def _offline(data_dir: Path | None) -> Sandbox:
    """The sandbox state without a server (its URLs are not used here)."""
    return Sandbox(_config(data_dir), "https://127.0.0.1")


def _choice(value: str | None, choices: tuple[str, ...], option: str) -> str | None:
    if value is not None and value not in choices:
        raise InvalidInput(f"{option} must be one of {', '.join(choices)}: {value!r}", value=value)
    return value


def _ca_profile(name: str, no_eab: bool, **settings: Any) -> CAProfile:
    """The named profile with the command line's overrides (None: keep the profile's)."""
    if name not in PROFILES:
        raise InvalidInput(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    for setting, choices in SETTING_CHOICES.items():
        _choice(settings[setting], choices, "--" + setting.replace("_", "-"))
    for field_name in settings["tkauth_fields"] or ():
        _choice(field_name, ("atc", "tkauth"), "--tkauth-field")
    settings["tkauth_fields"] = tuple(settings["tkauth_fields"] or ()) or None
    if settings["cert_validity"] is not None:
        settings["cert_validity"] = parse_duration(settings["cert_validity"])
    return PROFILES[name].with_options(eab_required=False if no_eab else None, **settings)


@sandbox_app.callback()
def run(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Listen address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port (0 picks a free one).")] = 8443,
    data_dir: DataDir = None,
    cert_validity: Annotated[
        str | None,
        typer.Option(help="Certificate lifetime: 7d, 2m, 90s (default: the profile's)."),
    ] = None,
    http: Annotated[bool, typer.Option("--http", help="Plain HTTP instead of HTTPS.")] = False,
    profile: Annotated[str, typer.Option(help=f"CA profile: {', '.join(PROFILES)}.")] = "atis",
    no_eab: Annotated[
        bool,
        typer.Option(
            "--no-eab",
            help="Do not require account binding (EAB, or a known kid in jwk for jwk_kid).",
        ),
    ] = False,
    identifier_encoding: Annotated[
        str | None, typer.Option(help="TNAuthList identifier: padded or base64url.")
    ] = None,
    cert_key: Annotated[
        str | None,
        typer.Option(help="Certificate key vs account key: any, account or separate."),
    ] = None,
    account_binding: Annotated[
        str | None,
        typer.Option(help="newAccount binding: eab (RFC 8555) or jwk_kid (kid inside jwk)."),
    ] = None,
    empty_payload_signature: Annotated[
        str | None,
        typer.Option(
            help="Empty payloads: rfc7515 only, or protected_only also accepted "
            "(signature over the protected header alone)."
        ),
    ] = None,
    honour_validity: Annotated[
        bool | None,
        typer.Option(
            "--honour-validity/--ignore-validity",
            help="Honour newOrder notBefore/notAfter.",
            show_default=False,
        ),
    ] = None,
    tkauth_field: Annotated[
        list[str] | None,
        typer.Option(help="tkauth-01 answer field accepted: atc or tkauth; repeat."),
    ] = None,
    fingerprint: Annotated[
        str | None,
        typer.Option(help="SPC token fingerprint: jwk_thumbprint or spki_sha256."),
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(help="Certificate subject: csr (copied) or fixed (C/O/CN=SHAKEN <SPC>)."),
    ] = None,
    fail_rate: Annotated[float, typer.Option(help="Share of requests refused with 503.")] = 0.0,
    providers: Annotated[
        Path | None, typer.Option(help="Providers file (TOML or JSON), added on start.")
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(help="Bearer token for /admin (without it: loopback clients only)."),
    ] = None,
) -> None:
    """Serve the sandbox STI-PA and STI-CA until interrupted."""
    if ctx.invoked_subcommand is not None:
        return
    ca_profile = _ca_profile(
        profile,
        no_eab,
        identifier_encoding=identifier_encoding,
        cert_key=cert_key,
        account_binding=account_binding,
        empty_payload_signature=empty_payload_signature,
        honour_validity=honour_validity,
        tkauth_fields=tkauth_field,
        fingerprint=fingerprint,
        subject=subject,
        cert_validity=cert_validity,
    )
    loaded: tuple[ProviderConfig, ...] = ()
    if providers is not None:
        data = read_input_file(providers, "providers file")
        loaded = load_providers(data, toml=providers.suffix.lower() == ".toml")
    config = _config(
        data_dir,
        host=host,
        port=port,
        http=http,
        profile=ca_profile,
        fail_rate=fail_rate,
        providers=loaded,
        admin_token=admin_token,
    )
    serve(config, announce=_announce)


def _announce(sandbox: Sandbox, tls_root: Path | None) -> None:
    urls = sandbox.urls
    console.print(f"ACME directory:  {urls.directory}", highlight=False, soft_wrap=True)
    console.print(f"STI-PA base URL: {urls.stipa}", highlight=False, soft_wrap=True)
    console.print(f"STI-PA CRL:      {urls.crl}", highlight=False, soft_wrap=True)
    console.print(f"Trust list:      {urls.ca_list}", highlight=False, soft_wrap=True)
    if tls_root is not None:
        console.print(f"TLS root (trust this): {tls_root}", highlight=False, soft_wrap=True)
    data_dir = sandbox.config.data_dir
    console.print(
        f"STI-PA certificate: {data_dir / STIPA_CERT_FILE}", highlight=False, soft_wrap=True
    )
    console.print(
        f"Trust anchors: {data_dir / TRUST_ANCHORS_FILE}", highlight=False, soft_wrap=True
    )
    console.print(f"Data dir: {data_dir}", highlight=False, soft_wrap=True)
    console.print(
        f"CA profile: {describe_profile(sandbox.config.profile)}", highlight=False, soft_wrap=True
    )
    console.file.flush()


@sandbox_app.command("add-eab")
def add_eab(
    data_dir: DataDir = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an External Account Binding credential (kid + base64url HMAC key)."""
    sandbox = _offline(data_dir)
    try:
        kid, key = sandbox.add_eab()
    finally:
        sandbox.close()
    if json_output:
        print_json({"kid": kid, "hmac_key": key})
    else:
        print(f"kid: {kid}\nhmac_key: {key}")


@sandbox_app.command("add-provider")
def add_provider(
    account_id: Annotated[str, typer.Option(help="STI-PA account id (the primary OCN).")],
    spc: Annotated[list[str], typer.Option(help="An SPC of this provider; repeat.")],
    user: Annotated[str, typer.Option(help="STI-PA API user id.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="API user password.")],
    name: Annotated[str, typer.Option(help="Provider name.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Register a service provider (account, SPCs, API user) at the sandbox STI-PA."""
    provider = ProviderConfig(account_id, tuple(spc), (APIUserConfig(user, password),), name)
    sandbox = _offline(data_dir)
    try:
        sandbox.add_provider(provider)
    finally:
        sandbox.close()
    console.print(
        f"provider {account_id}: SPCs {', '.join(spc)}, user {user}",
        highlight=False,
        markup=False,
    )
