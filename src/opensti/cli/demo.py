"""``opensti demo``: the whole job on one machine, offline, in well under a minute.

It runs the real paths, not shortcuts: the sandbox STI-PA + STI-CA and the STI-CR
(our x5u repository) are served over HTTPS on 127.0.0.1 in this process; an ACME
account is registered with EAB, STI-PA credentials are set, two certificate entries
(OCNs 123H and 456J) each get a certificate through the full SPC token + ACME flow
into the store, a call is signed with each (STI-AS) and verified by fetching its x5u
from the STI-CR (STI-VS).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.table import Table

from opensti.app import App
from opensti.cli._app import app, console
from opensti.cli._context import GlobalOptions, StepProgress
from opensti.cli.cert import STEP_LABELS
from opensti.config import load_settings
from opensti.core.errors import UpstreamError
from opensti.core.verify import VerificationResult
from opensti.lifecycle.acquire import AcquireStep
from opensti.lifecycle.flow import ReconcileHooks
from opensti.lifecycle.reconcile import ReconcilePolicy, reconciler_for
from opensti.repository import create_repository_app
from opensti.sandbox.config import DEMO_PASSWORD, DEMO_PROVIDER, SandboxConfig
from opensti.sandbox.server import SandboxHandle, bind_socket, run_sandbox_in_thread
from opensti.sandbox.tls import ensure_tls_files
from opensti.signing import SignedCall
from opensti.store import Database, Role, Secret, active_certificate, get_entry_by_id
from opensti.verification import FetchPolicy, HTTPGet, TrustStore, VerificationService, X5UFetcher

_DEMO_SPCS = DEMO_PROVIDER.spcs
_DEST = "12155550131"


@dataclass(frozen=True, slots=True)
class _Call:
    spc: str
    signed: SignedCall
    result: VerificationResult


@contextmanager
def _repository(database: Database, sandbox: SandboxHandle, sock: socket.socket) -> Iterator[None]:
    """Serve the STI-CR on ``sock`` over HTTPS, with the sandbox's local TLS root."""
    tls = ensure_tls_files(sandbox.state.config.data_dir, dt.datetime.now(dt.UTC))
    config = uvicorn.Config(
        create_repository_app(database, refresh_interval=1.0),
        log_level="warning",
        access_log=False,
        lifespan="on",
        ssl_certfile=str(tls.server_cert),
        ssl_keyfile=str(tls.server_key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="opensti-sti-cr", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise UpstreamError("the STI-CR server did not start")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def _verify(sandbox: SandboxHandle, calls: list[tuple[str, SignedCall]]) -> list[_Call]:
    """The STI-VS path: fetch each x5u from the STI-CR, chain to the trust list, check CRL."""
    root = str(sandbox.tls_root_path)
    http_get = HTTPGet(verify=root)
    trust = TrustStore(
        sandbox.trust_anchors,
        crl_urls=(sandbox.state.urls.crl,),
        crl_signers=(sandbox.state.pki.stipa.certificate,),
        fetch=http_get,
    )
    try:
        await trust.refresh_crls(time.time(), force=True)
        # Loopback x5u are refused by default; the demo's STI-CR is on 127.0.0.1.
        async with X5UFetcher(FetchPolicy(allow_private=True), verify=root) as fetcher:
            service = VerificationService(fetcher, trust)
            return [
                _Call(
                    spc,
                    signed,
                    await service.verify([signed.identity], signed.claims.orig, _DEST),
                )
                for spc, signed in calls
            ]
    finally:
        await http_get.aclose()


def _data_dir(local: Path | None, ctx: typer.Context) -> Path:
    options = ctx.find_root().obj
    chosen = local or (options.data_dir if isinstance(options, GlobalOptions) else None)
    directory = chosen or Path(tempfile.mkdtemp(prefix="opensti-demo-"))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


def _open_app(directory: Path, sandbox: SandboxHandle, public_base_url: str) -> App:
    trust_file = directory / "stipa-trust-anchors.pem"
    trust_file.write_bytes(sandbox.state.pki.stipa.pem)
    settings = load_settings(
        data_dir=directory,
        database_url=f"sqlite:///{directory / 'opensti.db'}",
        tls_ca_file=sandbox.tls_root_path,
        stipa_trust_anchors=trust_file,
        public_base_url=public_base_url,
        organization="opensti demo carrier",
    )
    return App.from_settings(settings)


def _acquire(application: App, sandbox: SandboxHandle, progress: StepProgress) -> str:
    """Account with EAB, STI-PA credentials, two entries and their certificates."""
    accounts = application.accounts
    progress("CA 'sandbox' added by its ACME directory URL")
    accounts.add_ca(
        "sandbox",
        sandbox.ca_directory_url,
        staging_directory_url=sandbox.ca_directory_url,
        needs_eab=True,
        honours_validity=True,
    )
    progress("ACME account registered with External Account Binding")
    kid, hmac_key = sandbox.state.add_eab()
    account = accounts.add_account(
        "sandbox",
        email="noc@demo-carrier.example",
        agree_tos=True,
        eab_kid=kid,
        eab_hmac_key=Secret.from_text(hmac_key),
    )
    progress(f"STI-PA credentials set for account {DEMO_PROVIDER.account_id}, login tested")
    accounts.set_stipa(
        account_id=DEMO_PROVIDER.account_id,
        user_id=DEMO_PROVIDER.users[0].user_id,
        password=Secret.from_text(DEMO_PASSWORD),
        base_url=sandbox.stipa_base_url,
    )
    accounts.test_stipa(DEMO_PROVIDER.account_id)
    for spc in _DEMO_SPCS:
        progress(f"{spc}: certificate entry added")
        application.certificates.add_entry(
            name=f"demo-{spc}",
            spc=spc,
            acme_account=account.name,
            stipa_account_id=DEMO_PROVIDER.account_id,
        )

        def step(acquire_step: AcquireStep, spc: str = spc) -> None:
            progress(f"{spc}: {STEP_LABELS[acquire_step]}")

        application.certificates.request_certificate(f"demo-{spc}", progress=step)
    return account.name


def _report(application: App, account: str, calls: list[_Call], directory: Path) -> None:
    table = Table("OCN", "entry", "certificate", "attest", "verstat")
    for call in calls:
        active = application.certificates.show_entry(call.signed.entry).entry.active
        table.add_row(
            call.spc,
            call.signed.entry,
            f"#{active.id}" if active else "-",
            call.signed.claims.attest,
            call.result.verstat.value,
        )
    console.print(table)
    for call in calls:
        console.print(f"x5u {call.spc}: {call.signed.x5u}", highlight=False, soft_wrap=True)
    info = application.accounts.show_account(account)
    files = directory / "files"
    for call in calls:
        application.certificates.export_certificate(call.signed.entry, files)
        (files / f"demo-{call.spc}-identity.txt").write_text(call.signed.identity + "\n")
    lines = (
        ("ACME account", info.account_url),
        ("JWK thumbprint", info.thumbprint),
        ("STI-PA fingerprint", info.fingerprint),
        ("data dir", str(directory)),
        ("files", f"{files} (chains, keys 0600, Identity headers)"),
        ("try", f"opensti --data-dir {directory} cert list"),
    )
    for label, value in lines:
        console.print(f"{label + ':':<20}{value}", highlight=False, markup=False, soft_wrap=True)
    _sbc_credential(application, directory)


def _sbc_credential(application: App, directory: Path) -> None:
    """How an SBC gets into the STIR API, which is closed by default: a signer token."""
    token = application.create_api_token(name="demo-sbc", role=Role.SIGNER).reveal_text()
    body = (
        '{"signingRequest":{"orig":{"tn":"12155550000"},'
        '"dest":{"tn":["12155550199"]},"attest":"A"}}'
    )
    steps = (
        f"an SBC's credential (role signer, shown once): {token}",
        f"  made with: opensti --data-dir {directory} token create --role signer --name demo-sbc",
        f"  serve:     opensti --data-dir {directory} serve --insecure-http --port 8443",
        f'  sign:      curl -H "Authorization: Bearer {token}" -H "Content-Type: application/json"'
        f" -d '{body}' http://127.0.0.1:8443/stir/v1/signing",
    )
    for line in steps:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


#: Certificate lifetime when the demo shows renewals: renewal starts with a third left.
_SHORT_VALIDITY = dt.timedelta(seconds=90)


def _watch_renewals(application: App, seconds: float) -> int:
    """Run the renewal loop for ``seconds`` and print each certificate it activates."""
    renewed: list[int] = []

    async def activated(entry_id: int) -> None:
        with application.database.read_session() as session:
            entry = get_entry_by_id(session, entry_id)
            certificate = active_certificate(session, entry_id)
            if certificate is None or certificate.not_after is None:
                return
            console.print(
                f"renewed {entry.name}: certificate #{certificate.id}, valid until "
                f"{certificate.not_after:%H:%M:%S} UTC, published at {certificate.x5u_url}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        renewed.append(entry_id)

    async def run() -> None:
        stop = asyncio.Event()
        policy = ReconcilePolicy(tick=1.0)
        loop = reconciler_for(application, policy, hooks=ReconcileHooks(activated=activated))
        task = asyncio.create_task(loop.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task

    # Every short-lived certificate is "at risk" by the 24-hour rule; no SMTP is set up.
    logging.getLogger("opensti.lifecycle.notify").setLevel(logging.ERROR)
    console.print(
        f"Watching renewals for {seconds:.0f} s ({_SHORT_VALIDITY.seconds}-second certificates, "
        "renewed with a third of their life left; the old ones stay published)...",
        highlight=False,
    )
    asyncio.run(run())
    return len(renewed)


@app.command("demo")
def demo(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Keep everything here (default: a new temp dir)."),
    ] = None,
    watch_renewals: Annotated[
        int,
        typer.Option(
            "--watch-renewals",
            min=0,
            help="Then run the renewal loop this many seconds, with 90-second certificates.",
        ),
    ] = 0,
) -> int:
    """Get SHAKEN certificates for two OCNs from a local STI-PA + STI-CA, sign a call
    with each and verify it over HTTPS, showing every step."""
    directory = _data_dir(data_dir, ctx)
    config = SandboxConfig(data_dir=directory / "sandbox", port=0)
    if watch_renewals:
        config = replace(config, cert_validity=_SHORT_VALIDITY)
    progress = StepProgress({})
    with progress:
        progress("sandbox STI-PA + STI-CA started on 127.0.0.1")
        sandbox = run_sandbox_in_thread(config)
        sock = bind_socket("127.0.0.1", 0)
        public_url = f"https://127.0.0.1:{sock.getsockname()[1]}"
        try:
            with _open_app(directory, sandbox, public_url) as application:
                progress(f"STI-CR (x5u repository) started at {public_url}")
                with _repository(application.database, sandbox, sock):
                    account = _acquire(application, sandbox, progress)
                    progress("a call signed with each certificate (STI-AS)")
                    signer = application.signing_service()
                    signed = [
                        (spc, signer.sign(f"1215555{i:04d}", _DEST, "A", entry=f"demo-{spc}"))
                        for i, spc in enumerate(_DEMO_SPCS)
                    ]
                    progress("each call verified: x5u fetched over HTTPS, chain, CRL (STI-VS)")
                    calls = asyncio.run(_verify(sandbox, signed))
                    progress.close()
                    _report(application, account, calls, directory)
                    if watch_renewals:
                        renewals = _watch_renewals(application, watch_renewals)
                        console.print(
                            f"{renewals} renewal(s) in {watch_renewals} s", highlight=False
                        )
        finally:
            sock.close()
            sandbox.stop()
    return 0 if all(call.result.passed for call in calls) else 1
