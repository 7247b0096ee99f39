"""How the api runs: graph reads are read-only transactions with a server-side timeout (one round
trip each), no dependency runs in the thread pool, and the server process freezes its startup
heap so full garbage collections do not stop the event loop for long."""

from __future__ import annotations

import gc
import importlib
import inspect
import pkgutil
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from neo4j import AsyncDriver
from neo4j.exceptions import ClientError

import api.routers
from api.api import create_app
from api.services.neo4j import read
from tests.integration.api.conftest import make_settings, running_app


async def test_read_returns_rows_as_dicts(neo4j_driver: AsyncDriver) -> None:
    rows = await read(neo4j_driver, "UNWIND [1, 2] AS x RETURN x, x * 2 AS y", timeout=5)
    assert rows == [{"x": 1, "y": 2}, {"x": 2, "y": 4}]


async def test_read_cannot_write(neo4j_driver: AsyncDriver) -> None:
    with pytest.raises(ClientError) as info:
        await read(neo4j_driver, "CREATE (n:ReadProbe) RETURN n", timeout=5)
    assert info.value.code == "Neo.ClientError.Statement.AccessMode"
    rows = await read(neo4j_driver, "MATCH (n:ReadProbe) RETURN count(n) AS n", timeout=5)
    assert rows == [{"n": 0}]


async def test_read_is_stopped_by_its_timeout(neo4j_driver: AsyncDriver) -> None:
    with pytest.raises(ClientError) as info:
        await read(
            neo4j_driver,
            "UNWIND range(1, 2000000000) AS x WITH x WHERE x % 7 = 0 RETURN count(x) AS n",
            timeout=0.2,
        )
    assert info.value.code is not None and "TransactionTimedOut" in info.value.code


def _sync_dependencies(dependant: Dependant, seen: set[int]) -> list[str]:
    found: list[str] = []
    for dep in dependant.dependencies:
        call: Any = dep.call
        if call is not None and id(call) not in seen:
            seen.add(id(call))
            target = call if inspect.isfunction(call) else getattr(call, "__call__", call)  # noqa: B004
            if not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)):
                found.append(getattr(call, "__qualname__", repr(call)))
        found.extend(_sync_dependencies(dep, seen))
    return found


def _api_routes() -> list[APIRoute]:
    app = create_app(make_settings())
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    for module in pkgutil.iter_modules(api.routers.__path__):
        router = importlib.import_module(f"api.routers.{module.name}").router
        routes.extend(r for r in router.routes if isinstance(r, APIRoute))
    return routes


def test_no_route_dependency_runs_in_the_thread_pool() -> None:
    """FastAPI runs a plain `def` dependency in its thread pool: a thread hop per request."""
    routes = _api_routes()
    assert {"/api/autocomplete", "/api/explore", "/api/sync"} <= {r.path for r in routes}
    offenders = {
        f"{route.path}: {name}" for route in routes for name in _sync_dependencies(route.dependant, set())
    }
    assert not offenders, sorted(offenders)
    sync_endpoints = [r.path for r in routes if not inspect.iscoroutinefunction(r.endpoint)]
    assert not sync_endpoints


async def test_the_server_process_freezes_its_startup_heap() -> None:
    assert gc.get_freeze_count() == 0
    async with running_app(make_settings(), freeze_gc=True) as (_, client):
        assert (await client.get("/health")).status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0
    async with running_app(make_settings()) as (_, client):  # tests and embedders: untouched
        assert (await client.get("/health")).status_code == 200
        assert gc.get_freeze_count() == 0
