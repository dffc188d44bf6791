"""OneHopRoute: a sync endpoint runs in a worker thread, keeps its parameters and
dependencies, and its response is still checked against the response model."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from gpucloud.api.routing import OneHopRoute, api_router


class Out(BaseModel):
    thread: str
    n: int
    user: str


async def current_user() -> str:
    return "alice"


def build() -> TestClient:
    router = api_router(prefix="/t")

    @router.get("/sync/{n}", response_model=Out)
    def sync_endpoint(n: int, user: Annotated[str, Depends(current_user)]) -> Out:
        return Out(thread=threading.current_thread().name, n=n, user=user)

    @router.get("/bad", response_model=Out)
    def bad() -> dict[str, str]:
        return {"thread": "x"}  # misses fields: the response check must catch it

    @router.get("/async")
    async def async_endpoint() -> dict[str, str]:
        return {"thread": threading.current_thread().name}

    app = FastAPI()
    app.include_router(router)
    return TestClient(app, raise_server_exceptions=False)


def test_a_sync_endpoint_runs_in_a_worker_thread_with_its_parameters() -> None:
    client = build()
    body = client.get("/t/sync/7").json()
    assert body["n"] == 7 and body["user"] == "alice"
    loop_thread = client.get("/t/async").json()["thread"]
    assert body["thread"] != loop_thread  # not on the event loop
    assert client.get("/t/sync/x").status_code == 422  # parameters still validated


def test_the_response_model_still_checks_what_a_sync_endpoint_returns() -> None:
    assert build().get("/t/bad").status_code == 500


def test_every_api_router_uses_the_one_hop_route() -> None:
    from fastapi.routing import APIRoute

    from gpucloud.api.app import create_app
    from gpucloud.api.deps import Platform

    app = create_app(Platform.__new__(Platform))
    routers = [r.original_router for r in app.routes if hasattr(r, "original_router")]
    api_routes = [r for router in routers for r in router.routes
                  if isinstance(r, APIRoute) and r.path.startswith("/v1/")]
    assert len(api_routes) > 50
    assert all(isinstance(r, OneHopRoute) for r in api_routes)
