"""``opensti notify ...`` (SMTP, contact, test email, summary) and ``opensti task run``."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from opensti.cli._app import app, console, group, print_json
from opensti.cli._context import open_app, read_secret
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
from opensti.store import get_entry

notify_app = group(help="Email to the technical contact.", no_args_is_help=True)
task_app = group(help="Deployment tasks of certificate entries.", no_args_is_help=True)
app.add_typer(notify_app, name="notify")
app.add_typer(task_app, name="task")

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@notify_app.command("set-smtp")
def set_smtp_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="SMTP server host name.")],
    from_address: Annotated[str, typer.Option("--from", help="Sender address.")],
    port: Annotated[int, typer.Option(help="SMTP port (587 STARTTLS, 465 SSL, 25 none).")] = 587,
    security: Annotated[SMTPSecurity, typer.Option(help="Transport security.")] = (
        SMTPSecurity.STARTTLS
    ),
    username: Annotated[
        str | None, typer.Option(help="Login name, if the server needs one.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from stdin (with --username).")
    ] = False,
    password_file: Annotated[
        Path | None, typer.Option(help="Read the password from this file (with --username).")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA certificates to trust for the server's TLS.")
    ] = None,
) -> None:
    """Store the SMTP server the notices go through (the password is encrypted at rest)."""
    password = None
    if username:
        password = read_secret(from_stdin=password_stdin, path=password_file, what="password")
    settings = SMTPSettings(
        host=host,
        from_address=from_address,
        port=port,
        security=security,
        username=username,
        password=password,
        ca_file=None if ca_file is None else str(ca_file.resolve()),
    )
    with open_app(ctx) as application, application.database.session() as session:
        save_smtp_settings(session, application.box, settings)
    console.print(f"SMTP server set: {host}:{port} ({security})", highlight=False)


@notify_app.command("set-contact")
def set_contact_command(
    ctx: typer.Context,
    addresses: Annotated[list[str], typer.Argument(help="The technical contact's address(es).")],
) -> None:
    """Set who gets the failure, at-risk, recovery and summary emails."""
    with open_app(ctx) as application, application.database.session() as session:
        stored = set_contacts(session, addresses)
    console.print(f"technical contact: {', '.join(stored)}", highlight=False)


@notify_app.command("set-policy")
def set_policy_command(
    ctx: typer.Context,
    at_risk_hours: Annotated[
        float, typer.Option(help="Warn when the active certificate has less life left.")
    ] = 24.0,
    summary: Annotated[SummaryPeriod, typer.Option(help="Periodic summary email.")] = (
        SummaryPeriod.OFF
    ),
) -> None:
    """Set the at-risk threshold and the summary period."""
    with open_app(ctx) as application, application.database.session() as session:
        set_policy(session, NotifyPolicy(at_risk_hours=at_risk_hours, summary=summary))
        policy = get_policy(session)
    console.print(f"at risk below {policy.at_risk_hours:g} h; summary {policy.summary}")


@notify_app.command("test")
def send_test_command(
    ctx: typer.Context,
    to: Annotated[
        list[str] | None, typer.Option(help="Send here instead of the technical contact.")
    ] = None,
) -> None:
    """Send a test email through the configured SMTP server."""
    with open_app(ctx) as application:
        recipients = asyncio.run(
            Notifier(application.database, application.box).send_test(now=_now(), to=to)
        )
    console.print(f"test email sent to {', '.join(recipients)}", highlight=False)


@notify_app.command("summary")
def summary_command(
    ctx: typer.Context,
    send: Annotated[
        bool, typer.Option(help="Email it to the contact instead of printing.")
    ] = False,
) -> None:
    """Every entry's state, certificate expiry and last error."""
    with open_app(ctx) as application:
        notifier = Notifier(application.database, application.box)
        if not send:
            console.print(notifier.summary_text(now=_now()), highlight=False, markup=False)
            return
        recipients = asyncio.run(notifier.send_summary(now=_now()))
    console.print(f"summary sent to {', '.join(recipients)}", highlight=False)


@task_app.command("run")
def run_command(
    ctx: typer.Context,
    entry: Annotated[str, typer.Argument(help="Certificate entry name.")],
    task: Annotated[
        list[str] | None, typer.Option("--task", help="Only this task (repeatable).")
    ] = None,
    pending: Annotated[
        bool, typer.Option(help="Only tasks not yet successful for the active certificate.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Run an entry's deployment tasks for its active certificate now."""
    with open_app(ctx) as application:
        with application.database.read_session() as session:
            entry_id = get_entry(session, entry).id
        results = asyncio.run(
            run_deployment_tasks(
                application.database,
                application.box,
                entry_id,
                now=_now(),
                names=task,
                only_pending=pending,
                public_base_url=application.settings.public_base_url,
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
