"""Every route of every app, walked without credentials and with each role, so a new
route cannot be left open unnoticed.

* management API: each route but the OpenAPI document declares one role dependency;
  no token is 401, a signer token and a lower role are 403, the role or above gets in.
* STIR API: everything but ``/health`` is 401 without a credential; only signer and
  admin tokens sign and verify; any token reads ``/metrics``.
* web UI: each page but sign-in, setup and static files needs a session of a role.
* STI-CR: public by design, GET/HEAD only, and a huge id is a 404, never a 500.

A path parameter gets an id too big for any database column, so an unbounded integer
shows up as a 500 here.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount

from opensti.api import create_api
from opensti.api._stir_access import store_tokens
from opensti.api.stir import STIRAccess, STIRApp
from opensti.app import App
from opensti.config import load_settings
from opensti.repository import create_repository_app
from opensti.signing import Keyring, SigningService
from opensti.store import Role, Secret, create_user
from opensti.web import create_web

HUGE = "99999999999999999999999"
RANK = {Role.SIGNER: -1, Role.READ_ONLY: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
#: Open on purpose: the API's own description, sign-in and first-run pages, assets.
PUBLIC_API = {"/api/v1/openapi.json", "/api/v1/docs", "/api/v1/docs/oauth2-redirect"}
PUBLIC_WEB = {"/login", "/logout", "/setup", "/favicon.ico"}
PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path, database_url: str) -> Iterator[App]:
    settings = load_settings(data_dir=tmp_path / "data", database_url=database_url)
    with App.from_settings(settings, migrate=True) as application:
        with application.database.session() as session:
            for role in (Role.READ_ONLY, Role.OPERATOR, Role.ADMIN):
                create_user(
                    session, name=f"u-{role.value}", password=Secret.from_text(PASSWORD), role=role
                )
        yield application


@pytest.fixture
def tokens(store: App) -> dict[Role, str]:
    return {
        role: store.create_api_token(name=f"walk-{role.value}", role=role).reveal_text()
        for role in Role
    }


@dataclass(frozen=True, slots=True)
class Walked:
    """One route as the app serves it: full path, methods, resolved dependencies."""

    path: str
    methods: frozenset[str]
    dependant: Any


def _flat(routes: list[Any]) -> Iterator[Walked]:
    """Every endpoint route, through included routers (FastAPI >= 0.16x keeps them
    as one lazily expanded route) and plain APIRoutes alike."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            for context in contexts():
                if getattr(context, "dependant", None) is not None:
                    yield Walked(context.path, frozenset(context.methods), context.dependant)
        elif isinstance(route, APIRoute):
            yield Walked(route.path, frozenset(route.methods), route.dependant)


def _path(route: Walked) -> str:
    """The route's path with every parameter filled: ints get a huge id."""
    params = {p.name: p for p in route.dependant.path_params}

    def fill(match: re.Match[str]) -> str:
        param = params.get(match.group(1))
        return HUGE if param is not None and param.field_info.annotation is int else "x"

    return re.sub(r"{(\w+)(?::\w+)?}", fill, route.path)


def _calls(dependant: Any) -> Iterator[str]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield getattr(dependency.call, "__name__", "")
        yield from _calls(dependency)


def _needed(route: Walked, prefix: str) -> Role | None:
    """The role a route's dependency demands (``require_*`` / ``need_*``), if any."""
    names = set(_calls(route.dependant))
    roles = {r for r in Role if f"{prefix}{r.value.replace('-', '_')}" in names}
    assert len(roles) <= 1, (route.path, names)
    return roles.pop() if roles else None


def _routes(app: FastAPI) -> Iterator[tuple[str, str, Walked]]:
    for route in _flat(app.routes):
        for method in sorted(route.methods - {"HEAD"}):
            yield method, _path(route), route


async def test_every_management_route_demands_a_role(store: App, tokens: dict[Role, str]) -> None:
    api = create_api(store)
    walked = 0
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        for method, path, route in _routes(api):
            if route.path in PUBLIC_API:
                continue
            needed = _needed(route, "require_")
            assert needed is not None, f"{method} {route.path} takes no role: it is open"
            walked += 1
            response = await client.request(method, path, json={})
            assert response.status_code == 401, (method, path, response.text)
            for role, token in tokens.items():
                headers = {"Authorization": f"Bearer {token}"}
                response = await client.request(method, path, json={}, headers=headers)
                if RANK[role] < RANK[needed]:
                    assert response.status_code == 403, (method, path, role, response.text)
                else:
                    assert response.status_code not in (401, 403), (method, path, role)
                    assert response.status_code < 500, (method, path, role, response.text)
    assert walked > 20


async def test_every_stir_route_is_closed(store: App, tokens: dict[Role, str]) -> None:
    app = STIRApp(
        SigningService(Keyring([])), None, access=STIRAccess(tokens=store_tokens(store.database))
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stir") as client:
        assert (await client.get("/health")).status_code == 200
        for path in [*app._routes, "/metrics"]:
            method = "GET" if path == "/metrics" else "POST"
            assert (await client.request(method, path, json={})).status_code == 401, path
            for role, token in tokens.items():
                headers = {"Authorization": f"Bearer {token}"}
                response = await client.request(method, path, json={}, headers=headers)
                allowed = path == "/metrics" or role in (Role.SIGNER, Role.ADMIN)
                if allowed:
                    assert response.status_code not in (401, 403), (path, role, response.text)
                else:
                    assert response.status_code == 403, (path, role)


@pytest.fixture
def web(store: App) -> FastAPI:
    return create_web(store)


@asynccontextmanager
async def _session(web: FastAPI, role: Role | None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
        if role is not None:
            token = _csrf((await client.get("/login")).text)
            data = {"username": f"u-{role.value}", "password": PASSWORD, "csrf_token": token}
            assert (await client.post("/login", data=data)).status_code == 303
        yield client


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    return match.group(1) if match else ""


async def test_every_web_page_needs_a_session_of_a_role(web: FastAPI) -> None:
    assert any(isinstance(r, Mount) and r.path == "/static" for r in web.routes)
    walked = 0
    for role in (None, Role.READ_ONLY, Role.OPERATOR, Role.ADMIN):
        async with _session(web, role) as client:
            token = _csrf((await client.get("/settings")).text) or _csrf(
                (await client.get("/login")).text
            )
            for method, path, route in _routes(web):
                if route.path in PUBLIC_WEB or route.path == "/":
                    continue
                needed = _needed(route, "need_")
                assert needed is not None, f"{method} {route.path} needs no role: it is open"
                walked += 1
                data: dict[str, Any] = {"csrf_token": token}
                response = await client.request(
                    method, path, data=data if method == "POST" else None
                )
                if role is None:
                    assert response.status_code == 303, (method, path)
                    assert response.headers["location"].startswith("/login")
                elif RANK[role] < RANK[needed]:
                    assert response.status_code == 403, (method, path, role)
                else:
                    assert response.status_code < 500, (method, path, role, response.text)
                    assert response.status_code != 403, (method, path, role)
    assert walked > 20


async def test_the_web_home_needs_a_session(web: FastAPI) -> None:
    async with _session(web, None) as client:
        response = await client.get("/")
    assert response.status_code in (303, 307)


async def test_the_sti_cr_is_public_and_bounded(store: App) -> None:
    repository = create_repository_app(store.database)
    await repository.start()
    try:
        transport = httpx.ASGITransport(app=repository)
        async with httpx.AsyncClient(transport=transport, base_url="http://cr") as client:
            assert (await client.get("/sti-cr/1.pem")).status_code == 404
            assert (await client.get(f"/sti-cr/{HUGE}.pem")).status_code == 404
            assert (await client.post("/sti-cr/1.pem")).status_code == 405
    finally:
        await repository.stop()
