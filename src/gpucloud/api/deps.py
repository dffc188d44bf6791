"""Request-scoped dependencies: the platform and the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from gpucloud.api.ratelimit import MAX_FAILURES, FailedAuthLimiter
from gpucloud.api.token_cache import DEFAULT_TTL_S, TokenCache
from gpucloud.controllers.context import Context
from gpucloud.controllers.runtime import ControlLoop
from gpucloud.core.errors import NotFound, Unauthenticated
from gpucloud.core.tenancy import Principal
from gpucloud.store.accounts import check_token, find_tenant, hash_token


class Platform:
    """What the API needs from the running control plane."""

    def __init__(
        self,
        ctx: Context,
        loop: ControlLoop | None = None,
        auth_max_failures: int = MAX_FAILURES,
        auth_cache_s: float = DEFAULT_TTL_S,
    ) -> None:
        self.ctx = ctx
        self.loop = loop
        # Failed token checks per client address (api/ratelimit.py).
        self.auth_failures = FailedAuthLimiter(auth_max_failures)
        self.tokens = TokenCache(auth_cache_s)  # principals of recently checked tokens
        # An API worker's controllers run in another process (api_workers.py): wake those.
        self.wake_elsewhere: Callable[[], None] | None = None

    def wake(self) -> None:
        if self.wake_elsewhere is not None:
            self.wake_elsewhere()
        elif self.loop is not None:
            self.loop.wake()


# The two dependencies of nearly every route are async: FastAPI runs a sync dependency in a
# worker thread of its own, and those hops cost more than the work (bench/load.py).
async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def get_principal(
    request: Request, platform: Annotated[Platform, Depends(get_platform)]
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated(
            "missing API token: send 'Authorization: Bearer TOKEN' "
            "(the CLI reads GPUCLOUD_TOKEN or 'gpucloud login')"
        )
    address = client_address(request)
    cached = cached_principal(platform, secret.strip(), address)
    if cached is not None:
        return cached
    # The database is read in a worker thread: the event loop never waits for it.
    return await run_in_threadpool(check_secret, platform, secret.strip(), address)


def cached_principal(platform: Platform, secret: str, address: str) -> Principal | None:
    """The token cache's answer, without I/O; None when the database must be asked."""
    platform.auth_failures.check(address)  # a limited address is refused even with a hit
    return platform.tokens.get(hash_token(secret), platform.ctx.clock.now())


def check_secret(platform: Platform, secret: str, address: str) -> Principal:
    """The caller behind a token secret, from the database (after a cache miss); remembered."""
    token_hash, now = hash_token(secret), platform.ctx.clock.now()
    with platform.auth_failures.guard(address), platform.ctx.db.read() as session:
        checked = check_token(session, token_hash, now)
    platform.tokens.put(token_hash, checked.principal, checked.expires_at)
    return checked.principal


def client_address(request: Request) -> str:
    """The peer's address (a proxy in front should be the one place that limits by X-F-F)."""
    return request.client.host if request.client is not None else "unknown"


def visible_tenant(session: Session, who: Principal, tenant: str | None) -> str:
    """The tenant a request is about: the caller's own unless it names one it may see."""
    if tenant is None:
        return who.tenant_id
    found = find_tenant(session, tenant)
    if not who.can_see(found.id):
        raise NotFound("tenant", tenant)
    return found.id


PlatformDep = Annotated[Platform, Depends(get_platform)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
