"""``opensti calls list|show``: the SIP message log, and the certificate behind a call."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from opensti.calls import call_dict, certificate_info, find_calls, list_calls
from opensti.cli._app import app, console, group, print_json
from opensti.config import load_settings
from opensti.core.errors import InvalidInput
from opensti.store import open_database

calls_app = group(help="The SIP message log: calls signed and verified.", no_args_is_help=True)
app.add_typer(calls_app, name="calls")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (default: $OPENSTI_CONFIG, if set)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]

_AGO = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: dt.datetime) -> dt.datetime:
    """``30m``, ``2h``, ``7d`` ago, or an ISO 8601 time (UTC when it gives no offset)."""
    match = _AGO.fullmatch(value.strip())
    if match:
        return now - dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"--since {value!r} is neither a duration (30m, 2h, 7d) nor an ISO 8601 time",
            value=value,
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@contextmanager
def _session(config: Path | None) -> Iterator[Session]:
    database = open_database(load_settings(config).database_url)
    try:
        with database.read_session() as session:
            yield session
    finally:
        database.dispose()


def _text(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


@calls_app.command("list")
def list_command(
    since: Annotated[
        str | None, typer.Option(help="Only calls since: 30m, 2h, 7d or a time.")
    ] = None,
    tn: Annotated[str | None, typer.Option(help="Calling or called number.")] = None,
    call_id: Annotated[str | None, typer.Option("--call-id", help="One SIP Call-ID.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many calls (newest first).")] = 50,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Recent calls, newest first."""
    start = parse_since(since, dt.datetime.now(dt.UTC)) if since else None
    with _session(config) as session:
        page = list_calls(session, since=start, tn=tn, call_id=call_id, limit=limit)
        rows = [call_dict(message) for message in page.calls]
    if json_output:
        print_json({"calls": rows, "next_cursor": page.next_cursor})
        return
    table = Table("time (UTC)", "dir", "Call-ID", "from", "to", "attest", "verstat", "code", "cert")
    for row in rows:
        table.add_row(
            row["at"][:19].replace("T", " "),
            "out" if row["direction"] == "outbound" else "in",
            _text(row["call_id"]),
            *(_text(row[key]) for key in ("from", "to", "attest", "verstat", "sip_code")),
            _text(row["certificate_id"]),
        )
    console.print(table)
    if not rows:
        console.print("no calls match", style="dim")


_CERT_FIELDS = (
    ("certificate", "certificate_id"),
    ("entry", "entry"),
    ("state", "state"),
    ("subject", "subject"),
    ("SPC", "spc"),
    ("issuer", "issuer"),
    ("serial", "serial"),
    ("not before", "not_before"),
    ("not after", "not_after"),
    ("fingerprint", "fingerprint"),
    ("x5u", "x5u"),
)


def _show(call: dict[str, Any]) -> None:
    console.print(
        f"[bold]{call['at']}[/bold]  {call['action']} ({call['direction']})", highlight=False
    )
    for label, key in (("from", "from"), ("to", "to"), ("attest", "attest")):
        console.print(f"  {label:<12} {_text(call[key])}", highlight=False)
    for label, key in (("verstat", "verstat"), ("SIP code", "sip_code"), ("reason", "reason")):
        if call[key] is not None:
            console.print(f"  {label:<12} {call[key]}", highlight=False, markup=False)
    cert = call["certificate"]
    if cert is None:
        console.print("  no certificate recorded", style="dim")
        return
    if cert["remote_certificate_id"] is not None:
        console.print("  signed by another provider's certificate, as verified:", highlight=False)
    elif cert["certificate_id"] is None:
        console.print("  signed by a certificate that is not ours:", highlight=False)
    for label, key in _CERT_FIELDS:
        if cert[key] is not None:
            console.print(f"  {label:<12} {cert[key]}", highlight=False, markup=False)


@calls_app.command("show")
def show_command(
    call_id: Annotated[str, typer.Argument(help="The SIP Call-ID.")],
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """One call: what was done with it and the certificate that signed it."""
    with _session(config) as session:
        calls = []
        for message in find_calls(session, call_id):
            info = certificate_info(session, message)
            calls.append({**call_dict(message), "certificate": info and info.to_dict()})
    if json_output:
        print_json({"call_id": call_id, "records": calls})
        return
    console.print(f"Call-ID {call_id}", highlight=False, markup=False)
    for call in calls:
        _show(call)
