"""The API's route class: a sync endpoint costs one worker-thread hop, not two, and reads
never queue behind writes.

FastAPI runs a sync endpoint in a worker thread and then, in a second hop, validates what it
returned against the response model. Each hop is a handover between the event loop and a
thread, and under load those handovers (and their turns at the GIL) cost more than a simple
endpoint's own work (bench/load.py). ``OneHopRoute`` runs the sync endpoint in a worker thread
itself and hands FastAPI an async endpoint, so the response is checked on the event loop
without a hop; the endpoint's signature (its parameters and dependencies) is unchanged.

Reads (GET, HEAD) and changes run in separate, small sets of threads: a change may wait for
the database's write lock (SQLite has one per file, held by the controllers' transactions too),
and with one shared set, changes waiting for it took every thread while reads queued behind
them. More threads than these only take turns at the GIL.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import weakref
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import APIRouter
from fastapi.routing import APIRoute

READ_THREADS = 4
WRITE_THREADS = 4
# Per event loop: a limiter waits with the primitives of the loop it was first used on.
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bool, CapacityLimiter]] = (
    weakref.WeakKeyDictionary()
)


def _threads(reads: bool) -> CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiters = _limiters.get(loop)
    if limiters is None:
        limiters = _limiters[loop] = {True: CapacityLimiter(READ_THREADS),
                                      False: CapacityLimiter(WRITE_THREADS)}
    return limiters[reads]


def in_worker_thread(endpoint: Callable[..., Any], reads: bool) -> Callable[..., Any]:
    """``endpoint`` as a coroutine function that runs it in a worker thread, in the read set
    or the change set."""

    @functools.wraps(endpoint)  # FastAPI reads the parameters through __wrapped__
    async def call(*args: Any, **kwargs: Any) -> Any:
        work = functools.partial(endpoint, *args, **kwargs)
        return await anyio.to_thread.run_sync(work, limiter=_threads(reads))

    return call


def _is_plain_sync(endpoint: Callable[..., Any]) -> bool:
    return not (inspect.iscoroutinefunction(endpoint) or inspect.isgeneratorfunction(endpoint)
                or inspect.isasyncgenfunction(endpoint))


class OneHopRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if _is_plain_sync(endpoint):
            methods = {m.upper() for m in kwargs.get("methods") or ["GET"]}
            endpoint = in_worker_thread(endpoint, reads=methods <= {"GET", "HEAD"})
        super().__init__(path, endpoint, **kwargs)


def api_router(**kwargs: Any) -> APIRouter:
    """Every API router is made here, so every route gets ``OneHopRoute``."""
    return APIRouter(route_class=OneHopRoute, **kwargs)
