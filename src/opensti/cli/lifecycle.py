"""``opensti notify ...`` (SMTP, contact, test email, summary) and ``opensti task run``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from opensti.cli._app import app, console, print_json, read_input_file
from opensti.config import Settings, load_settings
from opensti.core.errors import DeliveryFailed
from opensti.lifecycle.deploy import run_deployment_tasks
from opensti.lifecycle.notify import (
    Notifier,
    NotifyPolicy,
    SMTPSecurity,
    SMTPSettings,
    SummaryPeriod,
    get_policy,
    save_smtp_settings,
    set_contacts,
    set_policy,
)
from opensti.store import Database, Secret, SecretBox, get_entry, load_secret_box, open_database

notify_app = typer.Typer(help="Email to the technical contact.", no_args_is_help=True)
task_app = typer.Typer(help="Deployment tasks of certificate entries.", no_args_is_help=True)
app.add_typer(notify_app, name="notify")
app.add_typer(task_app, name="task")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (default: $OPENSTI_CONFIG, if set)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


@contextmanager
def _store(config: Path | None) -> Iterator[tuple[Settings, Database, SecretBox]]:
    settings = load_settings(config)
    database = open_database(settings.database_url)
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    try:
        yield settings, database, load_secret_box(settings.data_dir, secret_key)
    finally:
        database.dispose()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@notify_app.command("set-smtp")
def set_smtp_command(
    host: Annotated[str, typer.Option(help="SMTP server host name.")],
    from_address: Annotated[str, typer.Option("--from", help="Sender address.")],
    port: Annotated[int, typer.Option(help="SMTP port (587 STARTTLS, 465 SSL, 25 none).")] = 587,
    security: Annotated[SMTPSecurity, typer.Option(help="Transport security.")] = (
        SMTPSecurity.STARTTLS
    ),
    username: Annotated[
        str | None, typer.Option(help="Login name, if the server needs one.")
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(help="File holding the password (else it is asked for, hidden)."),
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA certificates to trust for the server's TLS.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Store the SMTP server the notices go through (the password is encrypted at rest)."""
    password = None
    if username:
        text = (
            read_input_file(password_file, "password file").decode("utf-8").strip()
            if password_file
            else typer.prompt("SMTP password", hide_input=True)
        )
        password = Secret.from_text(text)
    settings = SMTPSettings(
        host=host,
        from_address=from_address,
        port=port,
        security=security,
        username=username,
        password=password,
        ca_file=None if ca_file is None else str(ca_file.resolve()),
    )
    with _store(config) as (_, database, box), database.session() as session:
        save_smtp_settings(session, box, settings)
    console.print(f"SMTP server set: {host}:{port} ({security})", highlight=False)


@notify_app.command("set-contact")
def set_contact_command(
    addresses: Annotated[list[str], typer.Argument(help="The technical contact's address(es).")],
    config: ConfigOption = None,
) -> None:
    """Set who gets the failure, at-risk, recovery and summary emails."""
    with _store(config) as (_, database, _box), database.session() as session:
        stored = set_contacts(session, addresses)
    console.print(f"technical contact: {', '.join(stored)}", highlight=False)


@notify_app.command("set-policy")
def set_policy_command(
    at_risk_hours: Annotated[
        float, typer.Option(help="Warn when the active certificate has less life left.")
    ] = 24.0,
    summary: Annotated[SummaryPeriod, typer.Option(help="Periodic summary email.")] = (
        SummaryPeriod.OFF
    ),
    config: ConfigOption = None,
) -> None:
    """Set the at-risk threshold and the summary period."""
    with _store(config) as (_, database, _box), database.session() as session:
        set_policy(session, NotifyPolicy(at_risk_hours=at_risk_hours, summary=summary))
        policy = get_policy(session)
    console.print(f"at risk below {policy.at_risk_hours:g} h; summary {policy.summary}")


@notify_app.command("test")
def send_test_command(
    to: Annotated[
        list[str] | None, typer.Option(help="Send here instead of the technical contact.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Send a test email through the configured SMTP server."""
    with _store(config) as (_, database, box):
        recipients = asyncio.run(Notifier(database, box).send_test(now=_now(), to=to))
    console.print(f"test email sent to {', '.join(recipients)}", highlight=False)


@notify_app.command("summary")
def summary_command(
    send: Annotated[
        bool, typer.Option(help="Email it to the contact instead of printing.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Every entry's state, certificate expiry and last error."""
    with _store(config) as (_, database, box):
        notifier = Notifier(database, box)
        if not send:
            console.print(notifier.summary_text(now=_now()), highlight=False, markup=False)
            return
        recipients = asyncio.run(notifier.send_summary(now=_now()))
    console.print(f"summary sent to {', '.join(recipients)}", highlight=False)


@task_app.command("run")
def run_command(
    entry: Annotated[str, typer.Argument(help="Certificate entry name.")],
    task: Annotated[
        list[str] | None, typer.Option("--task", help="Only this task (repeatable).")
    ] = None,
    pending: Annotated[
        bool, typer.Option(help="Only tasks not yet successful for the active certificate.")
    ] = False,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Run an entry's deployment tasks for its active certificate now."""
    with _store(config) as (settings, database, box):
        with database.read_session() as session:
            entry_id = get_entry(session, entry).id
        results = asyncio.run(
            run_deployment_tasks(
                database,
                box,
                entry_id,
                now=_now(),
                names=task,
                only_pending=pending,
                public_base_url=settings.public_base_url,
            )
        )
    if json_output:
        print_json([result.to_dict() for result in results])
    else:
        for result in results:
            outcome = "ok" if result.ok else f"FAILED: {result.error}"
            console.print(f"{result.task_name} ({result.kind}): {outcome}", highlight=False)
        if not results:
            console.print("no task to run", highlight=False)
    failed = [result.task_name for result in results if not result.ok]
    if failed:
        raise DeliveryFailed(f"deployment tasks failed: {', '.join(failed)}")
