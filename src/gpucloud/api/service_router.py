"""``/s/{tenant}/{service}/{path}``: a service's endpoint, routed to one of its READY replicas.

- Access: the caller's gpucloud token (or console session) must belong to the service's tenant
  (another tenant's service is a 404, indistinguishable from none); a public service also
  takes its own key (``Authorization: Bearer gcs_...``). gpucloud's credentials are never
  forwarded to the replica.
- Balancing: the READY replica with the fewest requests in flight from this router.
- Rotation: the service controller probes each replica's readiness path and marks it READY or
  UNREADY; the router re-reads the READY set every ``ROUTE_TTL_S``, and a replica that refuses
  a connection is skipped for ``BAD_FOR_S`` at once (the request goes to another one).
- Cold start: with no READY replica the request waits (up to ``COLD_START_WAIT_S``) while the
  autoscaler, woken at once, starts one; it is then served. Never an error for a cold start.
- Streaming: the answer is relayed chunk by chunk as the replica sends it (SSE, chunked).
- Counting: requests per second and in flight are counted here (``TRAFFIC``) and read by the
  autoscaler of this process: with several API replicas each one counts only its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette import routing as starlette_routing
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from gpucloud.api import http_proxy, instance_access
from gpucloud.api.deps import Platform, client_address
from gpucloud.api.problems import problem
from gpucloud.api.routing import api_router
from gpucloud.api.upstream import Answer, UpstreamError, UpstreamPool, UpstreamUnavailable
from gpucloud.controllers.service_traffic import TRAFFIC, ServiceTraffic
from gpucloud.core.errors import GpucloudError, NotFound, Unauthenticated
from gpucloud.core.services import ReplicaState
from gpucloud.core.tenancy import Principal
from gpucloud.store import services as store

router = api_router(tags=["services"])  # its routes are added below, once defined
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
ROUTE_TTL_S = 0.5  # how stale the READY set may be (the controller drains for longer)
AUTH_TTL_S = 2.0  # a revoked token keeps working through the router for at most this long
BAD_FOR_S = 2.0
COLD_START_WAIT_S = 60.0
POLL_S = 0.05
SMALL_BODY = 1 << 20  # a body of known length up to this is relayed in one write


@dataclass(frozen=True)
class Replica:
    id: str
    host: str
    port: int


@dataclass(frozen=True)
class Route:
    service_id: str
    tenant_id: str
    name: str
    key_hash: str | None  # set when public
    replicas: tuple[Replica, ...]
    fetched_s: float


@dataclass
class ServiceRouter:
    """One per API process: route and credential caches, the upstream connection pool."""

    traffic: ServiceTraffic = field(default_factory=lambda: TRAFFIC)
    routes: dict[tuple[str, str], Route | None] = field(default_factory=dict)
    fetched: dict[tuple[str, str], float] = field(default_factory=dict)
    callers: dict[str, tuple[float, Principal]] = field(default_factory=dict)
    bad: dict[str, float] = field(default_factory=dict)  # replica id -> skipped until
    pool: UpstreamPool = field(default_factory=UpstreamPool)

    async def route(self, platform: Platform, tenant: str, name: str,
                    fresh: bool = False) -> Route | None:
        key = (tenant, name)
        now = time.monotonic()
        if fresh or now - self.fetched.get(key, -1e9) > ROUTE_TTL_S:
            self.routes[key] = await run_in_threadpool(_load_route, platform, tenant, name)
            self.fetched[key] = now
        return self.routes.get(key)

    def pick(self, route: Route) -> Replica | None:
        now = time.monotonic()
        usable = [r for r in route.replicas if self.bad.get(r.id, 0) <= now]
        if not usable:
            return None
        least = min(self.traffic.outstanding(r.id) for r in usable)
        return random.choice([r for r in usable if self.traffic.outstanding(r.id) == least])


def _router(request: Request) -> ServiceRouter:
    state = request.app.state
    found = getattr(state, "service_router", None)
    if found is None:
        found = state.service_router = ServiceRouter()
    return found


def _load_route(platform: Platform, tenant: str, name: str) -> Route | None:
    with platform.ctx.db.read() as session:
        service = store.routed(session, tenant, name)
        if service is None:
            return None
        ready = tuple(Replica(r.id, r.host, r.port)
                      for r in store.replicas(session, service.id)
                      if r.state is ReplicaState.READY and r.host is not None)
        return Route(service.id, service.tenant_id, service.name,
                     service.key_hash if service.public else None, ready, time.monotonic())


async def service_root(request: Request) -> Response:
    tenant, service = request.path_params["tenant"], request.path_params["service"]
    if request.method in ("GET", "HEAD"):
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/s/{tenant}/{service}/{query}", status_code=307)
    return await _serve(tenant, service, "/", request)


async def service_http(request: Request) -> Response:
    """A plain Starlette endpoint (no FastAPI dependency machinery): this path is the
    router's added latency. The rest of the path goes on as sent (still percent-encoded)."""
    tenant, service = request.path_params["tenant"], request.path_params["service"]
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    rest = raw.split(b"/", 4)[4] if raw.count(b"/") >= 4 else b""
    return await _serve(tenant, service, "/" + rest.decode("latin-1"), request)


async def _serve(tenant: str, service: str, path: str, request: Request) -> Response:
    platform: Platform = request.app.state.platform
    routing = _router(request)
    try:
        route = await routing.route(platform, tenant, service)
        await _check_access(platform, routing, request, route, tenant, service)
    except GpucloudError as err:
        return instance_access.error_response(err)[1]  # type: ignore[return-value]
    assert route is not None
    body = await request.body()  # small (a prompt): kept, so a refused connection is retried
    headers = http_proxy.request_headers(request.headers.items(), request.cookies)
    headers["x-forwarded-prefix"] = f"/s/{tenant}/{service}"
    if request.client is not None:
        headers["x-forwarded-for"] = request.client.host
    target = path + (f"?{request.url.query}" if request.url.query else "")
    started = time.monotonic()
    routing.traffic.arrived(route.service_id, started)
    try:
        return await _forward(platform, routing, route, request.method, target, headers, body,
                              tenant, service, started)
    except BaseException:
        routing.traffic.finished(route.service_id, time.monotonic())
        raise


async def _forward(platform: Platform, routing: ServiceRouter, route: Route, method: str,
                   target: str, headers: dict[str, str], body: bytes, tenant: str,
                   name: str, started: float) -> Response:
    """Send to the least busy READY replica; none yet: wait for one (a cold start)."""
    waiting = False
    deadline = started + COLD_START_WAIT_S
    try:
        while True:
            replica = routing.pick(route)
            if replica is None:
                if not waiting:
                    waiting = True
                    routing.traffic.waiting(route.service_id, +1, time.monotonic())
                    platform.wake()  # the autoscaler starts one now, not at its next tick
                if time.monotonic() >= deadline:
                    routing.traffic.finished(route.service_id, time.monotonic())
                    return _unavailable(route)
                await asyncio.sleep(POLL_S)
                fresh = await routing.route(platform, tenant, name)
                route = fresh or route
                continue
            if waiting:
                waiting = False
                routing.traffic.waiting(route.service_id, -1, time.monotonic())
            answer = await _send(routing, replica, method, target, headers, body)
            if answer is None:
                routing.bad[replica.id] = time.monotonic() + BAD_FOR_S
                continue
            try:
                return await _relay(routing, route, replica, answer)
            except UpstreamError as err:
                return problem(502, "bad_gateway", f"service {route.name}: replica "
                               f"{replica.host}:{replica.port} failed mid-answer: {err}")
    finally:
        if waiting:
            routing.traffic.waiting(route.service_id, -1, time.monotonic())


async def _send(routing: ServiceRouter, replica: Replica, method: str, target: str,
                headers: dict[str, str], body: bytes) -> Answer | None:
    """The replica's answer; None when it refused or dropped the connection before answering
    (gone, or stopping): the request is then sent to another replica."""
    routing.traffic.to_replica(replica.id, +1)
    try:
        return await routing.pool.request(replica.host, replica.port, method, target, headers,
                                          body)
    except UpstreamUnavailable:
        routing.traffic.to_replica(replica.id, -1)
        return None
    except BaseException:
        routing.traffic.to_replica(replica.id, -1)
        raise


async def _relay(routing: ServiceRouter, route: Route, replica: Replica,
                 answer: Answer) -> Response:
    """A small body of known length in one write; anything else (SSE, chunked, large) chunk
    by chunk as the replica sends it."""
    released = False

    def done() -> None:
        nonlocal released
        if not released:
            released = True
            routing.traffic.to_replica(replica.id, -1)
            routing.traffic.finished(route.service_id, time.monotonic())

    if answer.length is not None and answer.length <= SMALL_BODY:
        try:
            body = await answer.read()
        finally:
            done()
        response = Response(body, status_code=answer.status)
        response.raw_headers = [*answer.headers, (b"content-length", str(len(body)).encode())]
        return response

    async def chunks() -> AsyncIterator[bytes]:
        body = answer.body()
        try:
            async for chunk in body:
                yield chunk
        finally:
            await body.aclose()  # the caller went away mid-body: the connection is closed
            done()

    streaming = StreamingResponse(chunks(), status_code=answer.status,
                                  background=BackgroundTask(done))
    streaming.raw_headers = list(answer.headers) + (
        [(b"content-length", str(answer.length).encode())] if answer.length is not None else [])
    return streaming


def _unavailable(route: Route) -> JSONResponse:
    return problem(503, "service_unavailable",
                   f"service {route.name}: no replica became ready within "
                   f"{int(COLD_START_WAIT_S)} s; see 'gpucloud service show {route.name}'")


async def _check_access(platform: Platform, routing: ServiceRouter, request: Request,
                        route: Route | None, tenant: str, name: str) -> None:
    """The service's own key, or a caller of its tenant; anything else looks like nothing."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip() if scheme.lower() == "bearer" else ""
    if secret.startswith(store.KEY_PREFIX):
        if route is not None and _key_matches(route, secret):
            return
        # Issued since the route was cached? One fresh look; a wrong key counts as a failed
        # token check (rate-limited per client address like every other).
        route = await routing.route(platform, tenant, name, fresh=True)
        if route is not None and _key_matches(route, secret):
            return
        platform.auth_failures.check(client_address(request))
        platform.auth_failures.failed(client_address(request))
        raise Unauthenticated("the service key is unknown or revoked")
    who = await _caller(platform, routing, request, secret)
    if route is None or not who.can_see(route.tenant_id):
        raise NotFound("service", f"{tenant}/{name}")


def _key_matches(route: Route, secret: str) -> bool:
    if route.key_hash is None:
        return False
    return hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), route.key_hash)


async def _caller(platform: Platform, routing: ServiceRouter, request: Request,
                  secret: str) -> Principal:
    from gpucloud.console.auth import SESSION_COOKIE

    cookie = request.cookies.get(SESSION_COOKIE, "") if not secret else ""
    if not secret and not cookie:
        raise Unauthenticated("missing credentials: send 'Authorization: Bearer TOKEN' (your "
                              "gpucloud token, or the service's key if it is public)")
    cache_key = hashlib.sha256((secret or f"cookie:{cookie}").encode()).hexdigest()
    now = time.monotonic()
    cached = routing.callers.get(cache_key)
    if cached is not None and cached[0] > now:
        return cached[1]

    def check() -> Principal:
        return instance_access.caller(platform, request.headers, request.cookies,
                                      client_address(request),
                                      getattr(request.app.state, "console_sessions", None))

    who = await run_in_threadpool(check)
    if len(routing.callers) > 10_000:
        routing.callers.clear()
    routing.callers[cache_key] = (now + AUTH_TTL_S, who)
    return who


router.routes += [
    starlette_routing.Route("/s/{tenant}/{service}", service_root, methods=METHODS),
    starlette_routing.Route("/s/{tenant}/{service}/{path:path}", service_http, methods=METHODS),
]
