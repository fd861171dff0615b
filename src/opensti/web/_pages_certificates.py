"""Certificates: the entries table (main page), adding an entry, one entry's detail with
its certificates, history, deployment tasks, Renew now and the chain download."""

from __future__ import annotations

import datetime as dt
import shlex
from dataclasses import replace
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from opensti.core.errors import Conflict, InvalidInput, NoActiveCertificate, NotFound, OpenSTIError
from opensti.lifecycle.acquire import DEFAULT_ATTEST, EntryInfo
from opensti.lifecycle.deploy import (
    create_deployment_task,
    delete_task,
    parse_task_config,
    run_deployment_tasks,
    update_deployment_task,
)
from opensti.lifecycle.reconcile import ReconcilePolicy, set_entry_renew_before
from opensti.store import (
    DeploymentTask,
    DeploymentTaskKind,
    RoutingChange,
    Secret,
    TaskChange,
    active_certificate,
    get_deployment_task,
    get_entry,
    list_deployment_tasks,
)
from opensti.store._validate import check_name, check_spc, check_url
from opensti.web._dashboard import call_charts
from opensti.web._deps import Operator, Viewer, backend
from opensti.web._forms import (
    FormCheck,
    checkbox,
    duration,
    duration_text,
    optional,
    text,
    upload,
)
from opensti.web._health import RiskPolicy
from opensti.web._render import flash, form_failed, redirect, render
from opensti.web._views import certificate_timeline, entry_rows, renewal_view

router = APIRouter()


@router.get("/")
async def certificates(request: Request, user: Viewer) -> Response:
    now = request.app.state.clock()
    with request.app.state.database.read_session() as session:
        rows = entry_rows(session, now, request.app.state.policy)
        charts = call_charts(session, now)
    context = {"title": "Certificates", "rows": rows, "charts": charts}
    return render(request, "certificates.html", context)


def _choices(app: Any) -> dict[str, Any]:
    return {"accounts": app.accounts.list_accounts(), "stipa": app.accounts.list_stipa()}


@router.get("/certificates/new")
async def new_entry_page(request: Request, user: Operator) -> Response:
    app = backend(request)
    choices = _choices(app)
    values = {"request_now": "on", "attest": DEFAULT_ATTEST}
    if len(choices["stipa"]) == 1:  # the one STI-PA account: the likely source
        values["stipa_account_id"] = choices["stipa"][0].account_id
    return render(
        request,
        "entry_new.html",
        {"title": "Add certificate entry", "values": values, **choices},
    )


def _check_entry(app: Any, form: Any, token_file: bytes | None) -> None:
    """The Add form's fields through the store's own checks, all reported at once."""
    check = FormCheck()
    check.field("name", check_name, text(form, "name"), "entry")
    check.field("spc", check_spc, text(form, "spc"), app.settings.spc_pattern)
    if not text(form, "acme_account"):
        check.fail("acme_account", "choose the ACME account (add one first)")
    token = optional(form, "token")
    if optional(form, "stipa_account_id") is None and token_file is None and token is None:
        check.fail(
            "stipa_account_id",
            "choose an STI-PA account, or bring an SPC token (a token file, or the token "
            "with its CRL URL)",
        )
    if token is not None and optional(form, "crl_url") is None:
        check.fail("crl_url", "a pasted token needs the CRL URL of the STI-PA that issued it")
    if optional(form, "crl_url") is not None:
        check.field("crl_url", check_url, text(form, "crl_url"), "CRL URL")
    check.field("renew_before", duration, form, "renew_before", "the renewal margin")
    check.done()


@router.post("/certificates/new")
async def add_entry(request: Request, user: Operator) -> Response:
    """Add the entry; without "request now" it waits (the loop leaves it alone) until
    Renew now requests its first certificate."""
    app = backend(request)
    form = await request.form()
    context = {"title": "Add certificate entry", **_choices(app)}
    request_now = checkbox(form, "request_now")
    try:
        token_file = await upload(form, "token_file", "SPC token file")
        _check_entry(app, form, token_file)
        name = text(form, "name")
        entry = await run_in_threadpool(
            app.certificates.add_entry,
            name=name,
            spc=text(form, "spc"),
            acme_account=text(form, "acme_account"),
            stipa_account_id=optional(form, "stipa_account_id"),
            crl_url=optional(form, "crl_url"),
            token_file=token_file,
            token=optional(form, "token"),
            renew_before=duration(form, "renew_before", "the renewal margin"),
            routing=_routing(form),
            hold=not request_now,
        )
    except OpenSTIError as exc:
        return form_failed(request, "entry_new.html", context, exc, form, "token")
    waits = "" if request_now else " It waits: Renew now requests its first certificate."
    flash(request, f"Entry {name} added: it signs {entry.signs}.{waits}")
    _flash_notes(request, entry.notes)
    if request_now:
        await _request(request, app, name)
    return redirect(f"/certificates/{name}")


async def _request(request: Request, app: Any, name: str) -> None:
    """Get the certificate now; the outcome becomes a notice (and a lifecycle event)."""
    try:
        result = await run_in_threadpool(app.certificates.request_certificate, name)
    except Conflict:
        flash(
            request,
            f"A certificate for {name} is being obtained already (by the renewal loop or "
            "another request): reload this page to see it become active.",
        )
        return
    except OpenSTIError as exc:
        flash(request, f"Requesting a certificate for {name} failed: {exc}", "error")
        return
    flash(request, f"New certificate for {name} is active (serial {result.certificate.serial}).")
    _flash_notes(request, result.notes)


def _flash_notes(request: Request, notes: tuple[str, ...]) -> None:
    """What a change did besides what was asked (e.g. the default signer moved)."""
    for note in notes:
        flash(request, note[:1].upper() + note[1:] + ".")


@router.get("/certificates/{name}")
async def entry_page(request: Request, name: str, user: Viewer) -> Response:
    app = backend(request)
    try:
        context = await run_in_threadpool(
            _entry_context, app, name, request.app.state.policy, request.app.state.clock()
        )
    except OpenSTIError as exc:
        return _not_found(request, exc)
    return render(request, "entry.html", context)


def _not_found(request: Request, exc: OpenSTIError) -> Response:
    return render(
        request, "error.html", {"title": "Not found", "message": str(exc)}, status_code=404
    )


@router.post("/certificates/{name}/renew")
async def renew(request: Request, name: str, user: Operator) -> Response:
    await _request(request, backend(request), name)
    return redirect(f"/certificates/{name}")


@router.get("/certificates/{name}/chain.pem")
async def chain(request: Request, name: str, user: Viewer) -> Response:
    with request.app.state.database.read_session() as session:
        try:
            cert = active_certificate(session, get_entry(session, name).id)
        except OpenSTIError as exc:
            return _not_found(request, exc)
    if cert is None or cert.chain_pem is None:
        return _not_found(request, NoActiveCertificate(f"entry {name!r} has no active certificate"))
    return Response(
        cert.chain_pem,
        media_type="application/pem-certificate-chain",
        headers={"content-disposition": f'attachment; filename="{name}-chain.pem"'},
    )


#: The one config key the form edits per kind; others (set through the API) are kept.
_TARGET_KEY = {
    DeploymentTaskKind.DIRECTORY: "path",
    DeploymentTaskKind.SCRIPT: "command",
    DeploymentTaskKind.WEBHOOK: "url",
}


def _kind(value: str) -> DeploymentTaskKind:
    try:
        return DeploymentTaskKind(value)
    except ValueError:
        raise InvalidInput(f"unknown deployment task kind {value!r}") from None


def _task_config(kind: DeploymentTaskKind, target: str, kept: dict[str, Any]) -> dict[str, Any]:
    """The form's target over the config ``kept`` (the task's own, for the same kind)."""
    if not target:
        raise InvalidInput("say where to deploy: a directory, a command or a webhook URL")
    value: Any = target
    if kind is DeploymentTaskKind.SCRIPT:
        try:
            value = shlex.split(target)
        except ValueError as exc:
            raise InvalidInput(f"the command does not parse: {exc}") from None
    return {**kept, _TARGET_KEY[kind]: value}


def _check_task(form: Any) -> tuple[DeploymentTaskKind, dict[str, Any]]:
    """A new task's name, kind and target through the same checks as storing it."""
    check = FormCheck()
    check.field("task_name", check_name, text(form, "task_name"), "deployment task")
    kind = check.field("kind", _kind, text(form, "kind"))
    config = None
    if kind is not None:
        config = check.field("target", _task_config, kind, text(form, "target"), {})
        if config is not None:
            check.field("target", parse_task_config, kind, config)
    check.done()
    assert kind is not None
    assert config is not None
    return kind, config


def task_target(task: DeploymentTask) -> str:
    """What the form's target field shows for a stored task."""
    value = task.config.get(_TARGET_KEY[task.kind], "")
    return shlex.join(value) if isinstance(value, list) else str(value)


def _secret(form: Any) -> Secret | None:
    value = optional(form, "secret")
    return None if value is None else Secret.from_text(value)


def _entry_context(app: Any, name: str, loop: ReconcilePolicy, now: dt.datetime) -> dict[str, Any]:
    detail = app.certificates.show_entry(name, events=50)
    with app.database.read_session() as session:
        entry = get_entry(session, name)
        tasks = list_deployment_tasks(session, entry.id)
        renewal = renewal_view(session, entry, RiskPolicy.load(session, loop))
    return {
        "title": f"Entry {name}",
        "detail": detail,
        "timeline": certificate_timeline(detail.certificates, now, renewal.renew_at),
        "tasks": tasks,
        "renewal": renewal,
        "values": {"renew_before": renewal.own, **_signing_values(detail.entry)},
    }


def _signing_values(entry: EntryInfo) -> dict[str, str]:
    """The signing form as the entry stands."""
    return {
        "default_signer": "on" if entry.default_signer else "",
        "prefixes": " ".join(entry.prefixes),
        "attest": entry.attest,
        "enabled": "on" if entry.enabled else "",
        "rcd_name": entry.rcd_name or "",
        "rcd_icon": entry.rcd_icon or "",
    }


def _routing(form: Any) -> RoutingChange:
    """Default signer, prefixes, attestation, caller name and logo: the fields the Add
    form and the entry's Signing form share (checked by the service, the same way for
    both; an empty name or logo removes it)."""
    prefixes = (optional(form, "prefixes") or "").replace(",", " ").split()
    return RoutingChange(
        default_signer=checkbox(form, "default_signer"),
        add_prefixes=tuple(prefixes),
        clear_prefixes=True,
        attest=text(form, "attest").upper() or None,
        rcd_name=text(form, "rcd_name"),
        rcd_icon=text(form, "rcd_icon"),
    )


def _signing_change(form: Any) -> RoutingChange:
    return replace(_routing(form), enabled=checkbox(form, "enabled"))


@router.post("/certificates/{name}/signing")
async def save_signing(request: Request, name: str, user: Operator) -> Response:
    """Default signer, prefixes, attestation, enabled: one change, all checked first."""
    app = backend(request)
    form = await request.form()
    try:
        entry = await run_in_threadpool(app.certificates.change_entry, name, _signing_change(form))
    except NotFound as exc:
        return _not_found(request, exc)
    except OpenSTIError as exc:
        context = await run_in_threadpool(
            _entry_context, app, name, request.app.state.policy, request.app.state.clock()
        )
        return form_failed(request, "entry.html", context, exc, form, error_key="signing_error")
    flash(request, f"Entry {name} now signs {entry.signs}.")
    _flash_notes(request, entry.notes)
    return redirect(f"/certificates/{name}#signing")


def _remove_context(app: Any, name: str) -> dict[str, Any]:
    entry = app.certificates.show_entry(name, events=1).entry
    return {"title": f"Remove entry {name}", "entry": entry, "values": {}}


@router.get("/certificates/{name}/remove")
async def remove_entry_page(request: Request, name: str, user: Operator) -> Response:
    """The confirmation step: what removing does, and the revoke choice."""
    try:
        context = await run_in_threadpool(_remove_context, backend(request), name)
    except OpenSTIError as exc:
        return _not_found(request, exc)
    return render(request, "entry_remove.html", context)


@router.post("/certificates/{name}/remove")
async def remove_entry(request: Request, name: str, user: Operator) -> Response:
    app = backend(request)
    form = await request.form()
    revoke = checkbox(form, "revoke")
    try:
        context = await run_in_threadpool(_remove_context, app, name)
        removed = await run_in_threadpool(app.certificates.remove_entry, name, revoke=revoke)
    except NotFound as exc:
        return _not_found(request, exc)
    except OpenSTIError as exc:
        return form_failed(request, "entry_remove.html", context, exc, form)
    revoked = f", {len(removed.revoked)} certificate(s) revoked" if removed.revoked else ""
    flash(
        request,
        f"Entry {name} removed{revoked}; {removed.still_published} chain(s) stay published "
        "until they expire.",
    )
    return redirect("/")


@router.post("/certificates/{name}/renewal")
async def save_renewal(request: Request, name: str, user: Operator) -> Response:
    """The entry's own renewal margin; empty: the global one (or the default)."""
    app = backend(request)
    form = await request.form()
    try:
        margin = duration(form, "renew_before", "the renewal margin")
        with app.database.session() as session:
            set_entry_renew_before(session, name, margin)
    except NotFound as exc:
        return _not_found(request, exc)
    except OpenSTIError as exc:
        context = await run_in_threadpool(
            _entry_context, app, name, request.app.state.policy, request.app.state.clock()
        )
        return form_failed(request, "entry.html", context, exc, form, error_key="renewal_error")
    if margin is None:
        flash(request, f"Entry {name} now renews by the global renewal policy.")
    else:
        margin_text = duration_text(margin.total_seconds())
        flash(request, f"Entry {name} now renews {margin_text} before expiry.")
    return redirect(f"/certificates/{name}#renewal")


@router.post("/certificates/{name}/tasks")
async def add_task(request: Request, name: str, user: Operator) -> Response:
    app = backend(request)
    form = await request.form()
    try:
        kind, config = _check_task(form)
        with app.database.session() as session:
            create_deployment_task(
                session,
                app.box,
                name,
                name=text(form, "task_name"),
                kind=kind,
                config=config,
                secret=_secret(form),
            )
    except OpenSTIError as exc:
        context = await run_in_threadpool(
            _entry_context, app, name, request.app.state.policy, request.app.state.clock()
        )
        return form_failed(request, "entry.html", context, exc, form, "secret")
    flash(request, f"Deployment task {text(form, 'task_name')} added.")
    return redirect(f"/certificates/{name}#tasks")


def _task_page_context(app: Any, name: str, task: str) -> dict[str, Any]:
    with app.database.read_session() as session:
        row = get_deployment_task(session, get_entry(session, name).id, task)
        values = {"kind": row.kind.value, "target": task_target(row)}
        values["enabled"] = "on" if row.enabled else ""
        has_secret = row.secret_ciphertext is not None
    return {
        "title": f"Task {task} of {name}",
        "entry_name": name,
        "task_name": task,
        "has_secret": has_secret,
        "values": values,
    }


@router.get("/certificates/{name}/tasks/{task}/edit")
async def edit_task_page(request: Request, name: str, task: str, user: Operator) -> Response:
    try:
        context = _task_page_context(backend(request), name, task)
    except OpenSTIError as exc:
        return _not_found(request, exc)
    return render(request, "task_edit.html", context)


@router.post("/certificates/{name}/tasks/{task}/edit")
async def edit_task(request: Request, name: str, task: str, user: Operator) -> Response:
    """The same checks as adding; fields the form does not show are kept."""
    app = backend(request)
    form = await request.form()
    try:
        context = _task_page_context(app, name, task)
        kind = _kind(text(form, "kind"))
        with app.database.session() as session:
            row = get_deployment_task(session, get_entry(session, name).id, task)
            kept = dict(row.config) if row.kind is kind else {}
            change = TaskChange(
                kind=kind,
                config=_task_config(kind, text(form, "target"), kept),
                secret=_secret(form),
                clear_secret=checkbox(form, "clear_secret"),
                enabled=checkbox(form, "enabled"),
            )
            update_deployment_task(session, app.box, name, task, change)
    except NotFound as exc:
        return _not_found(request, exc)
    except OpenSTIError as exc:
        return form_failed(request, "task_edit.html", context, exc, form, "secret")
    flash(request, f"Deployment task {task} saved.")
    return redirect(f"/certificates/{name}#tasks")


@router.get("/certificates/{name}/tasks/{task}/delete")
async def delete_task_page(request: Request, name: str, task: str, user: Operator) -> Response:
    """The confirmation step: a task is deleted only from this page's button."""
    try:
        _task_page_context(backend(request), name, task)
    except OpenSTIError as exc:
        return _not_found(request, exc)
    context = {
        "title": f"Delete deployment task {task}",
        "message": f"Entry {name} stops running it after each new certificate; its "
        "settings and stored secret are deleted. Files it already deployed stay where they are.",
        "action": f"/certificates/{name}/tasks/{task}/delete",
        "button": f"Delete task {task}",
        "cancel": f"/certificates/{name}#tasks",
    }
    return render(request, "confirm.html", context)


@router.post("/certificates/{name}/tasks/{task}/delete")
async def delete_task_route(request: Request, name: str, task: str, user: Operator) -> Response:
    app = backend(request)
    try:
        with app.database.session() as session:
            delete_task(session, name, task)
    except OpenSTIError as exc:
        flash(request, f"Task {task} not deleted: {exc}", "error")
    else:
        flash(request, f"Deployment task {task} deleted.")
    return redirect(f"/certificates/{name}#tasks")


@router.post("/certificates/{name}/tasks/run")
async def run_tasks(request: Request, name: str, user: Operator) -> Response:
    app = backend(request)
    form = await request.form()
    only = optional(form, "task")
    try:
        with app.database.read_session() as session:
            entry_id = get_entry(session, name).id
        results = await run_deployment_tasks(
            app.database,
            app.box,
            entry_id,
            now=request.app.state.clock(),
            names=None if only is None else [only],
            public_base_url=app.settings.public_base_url,
        )
    except OpenSTIError as exc:
        flash(request, f"Deployment not run: {exc}", "error")
        return redirect(f"/certificates/{name}#tasks")
    for result in results:
        if result.ok:
            flash(request, f"Task {result.task_name}: done.")
        else:
            flash(request, f"Task {result.task_name} failed: {result.error}", "error")
    if not results:
        flash(request, "No enabled deployment task to run.", "error")
    return redirect(f"/certificates/{name}#tasks")
