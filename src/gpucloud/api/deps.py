"""Request-scoped dependencies: the platform and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from gpucloud.api.ratelimit import MAX_FAILURES, FailedAuthLimiter
from gpucloud.controllers.context import Context
from gpucloud.controllers.runtime import ControlLoop
from gpucloud.core.errors import NotFound, Unauthenticated
from gpucloud.core.tenancy import Principal
from gpucloud.store.accounts import authenticate, find_tenant


class Platform:
    """What the API needs from the running control plane."""

    def __init__(
        self, ctx: Context, loop: ControlLoop | None = None, auth_max_failures: int = MAX_FAILURES
    ) -> None:
        self.ctx = ctx
        self.loop = loop
        # Failed token checks per client address (api/ratelimit.py).
        self.auth_failures = FailedAuthLimiter(auth_max_failures)

    def wake(self) -> None:
        if self.loop is not None:
            self.loop.wake()


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def get_principal(
    request: Request, platform: Annotated[Platform, Depends(get_platform)]
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated(
            "missing API token: send 'Authorization: Bearer TOKEN' "
            "(the CLI reads GPUCLOUD_TOKEN or 'gpucloud login')"
        )
    with platform.auth_failures.guard(client_address(request)), platform.ctx.db.read() as session:
        return authenticate(session, secret.strip(), platform.ctx.clock.now())


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
