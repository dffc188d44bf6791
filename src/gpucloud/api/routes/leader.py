"""GET /v1/admin/leader: which replica runs the controllers, under which fencing token."""

from __future__ import annotations

from gpucloud.api.deps import PlatformDep, PrincipalDep
from gpucloud.api.routing import api_router
from gpucloud.core.leadership import CONTROLLERS
from gpucloud.schemas.control import LeaderOut
from gpucloud.store.leader import read_lease

router = api_router(prefix="/v1", tags=["admin"])


@router.get("/admin/leader", response_model=LeaderOut)
def leader(platform: PlatformDep, who: PrincipalDep) -> LeaderOut:
    who.require_operator("reading the leader lease")
    with platform.ctx.db.read() as session:
        lease = read_lease(session)
    leadership = platform.loop.leadership if platform.loop is not None else None
    me = leadership.me if leadership is not None else None
    holder = lease.holder if lease is not None else None
    return LeaderOut(
        name=CONTROLLERS,
        holder=holder,
        token=lease.token if lease is not None else 0,
        expires_at=lease.expires_at if lease is not None else None,
        renewed_at=lease.renewed_at if lease is not None else None,
        acquired_at=lease.acquired_at if lease is not None else None,
        replica=me,
        # Without a lease (tests' harness) the one loop always runs the controllers.
        replica_leads=leadership.may_run() if leadership is not None else platform.loop
        is not None,
    )
