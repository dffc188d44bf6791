"""The API's route class: a sync endpoint costs one worker-thread hop, not two.

FastAPI runs a sync endpoint in a worker thread and then, in a second hop, validates what it
returned against the response model. Each hop is a handover between the event loop and a
thread, and under load those handovers (and their turns at the GIL) cost more than a simple
endpoint's own work (bench/load.py). ``OneHopRoute`` runs the sync endpoint in a worker thread
itself and hands FastAPI an async endpoint, so the response is checked on the event loop
without a hop; the endpoint's signature (its parameters and dependencies) is unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute


def in_worker_thread(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` as a coroutine function that runs it in a worker thread."""

    @functools.wraps(endpoint)  # FastAPI reads the parameters through __wrapped__
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(endpoint, *args, **kwargs)

    return call


def _is_plain_sync(endpoint: Callable[..., Any]) -> bool:
    return not (inspect.iscoroutinefunction(endpoint) or inspect.isgeneratorfunction(endpoint)
                or inspect.isasyncgenfunction(endpoint))


class OneHopRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if _is_plain_sync(endpoint):
            endpoint = in_worker_thread(endpoint)
        super().__init__(path, endpoint, **kwargs)


def api_router(**kwargs: Any) -> APIRouter:
    """Every API router is made here, so every route gets ``OneHopRoute``."""
    return APIRouter(route_class=OneHopRoute, **kwargs)
