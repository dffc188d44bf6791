"""/v1/limits (a tenant's quotas and budgets, with what counts against them) and the
operator's /v1/admin/limits to set and remove them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from gpucloud.api.deps import PlatformDep, PrincipalDep, visible_tenant
from gpucloud.api.routing import api_router
from gpucloud.billing.limits import Limit, LimitKind, Period, parse_limit
from gpucloud.core.catalog import resolve_model
from gpucloud.core.errors import NotFound
from gpucloud.schemas import LimitIn, LimitOut
from gpucloud.store.limit_gate import LimitGate
from gpucloud.store.limits import remove_limit, set_limit

router = api_router(prefix="/v1", tags=["limits"])


@router.get("/limits", response_model=list[LimitOut])
def list_limits(
    platform: PlatformDep, who: PrincipalDep, tenant: str | None = None
) -> list[LimitOut]:
    now = platform.ctx.clock.now()
    with platform.ctx.db.read() as session:
        tenant_id = visible_tenant(session, who, tenant)
        gate = LimitGate(session, now)
        usage = gate.usage(tenant_id)
    return [
        LimitOut(
            tenant_id=tenant_id,
            key=limit.key,
            kind=limit.kind,
            model=limit.model,
            period=limit.period,
            limit=limit.describe(gate.currency),
            amount=limit.amount,
            used=taken,
            used_text=limit.show(taken, gate.currency),
            resets_at=limit.period.end(now) if limit.period else None,
        )
        for limit, taken in usage
    ]


@router.put("/admin/limits", response_model=list[LimitOut])
def put_limit(body: LimitIn, platform: PlatformDep, who: PrincipalDep) -> list[LimitOut]:
    """Set a cap or budget; the same kind, model and period again replaces it. Jobs already
    admitted keep running; new ones are held to it from now on."""
    who.require_operator("setting quotas and budgets")
    now = platform.ctx.clock.now()
    with platform.ctx.db.write() as session:
        tenant_id = visible_tenant(session, who, body.tenant)
        currency = LimitGate(session, now).currency
        limit = parse_limit(body.kind, body.value, body.model, body.period, currency)
        set_limit(session, tenant_id, limit, who.user_name, now)
    platform.wake()  # a raised limit lets waiting jobs through
    return list_limits(platform, who, tenant_id)


@router.delete("/admin/limits", response_model=list[LimitOut])
def delete_limit(
    platform: PlatformDep,
    who: PrincipalDep,
    tenant: str,
    kind: LimitKind,
    model: Annotated[str | None, Query()] = None,
    period: Annotated[Period | None, Query()] = None,
) -> list[LimitOut]:
    who.require_operator("removing quotas and budgets")
    key = Limit(kind, 0, resolve_model(model).name if model else None, period).key
    with platform.ctx.db.write() as session:
        tenant_id = visible_tenant(session, who, tenant)
        if not remove_limit(session, tenant_id, key):
            raise NotFound("limit", key)
    platform.wake()
    return list_limits(platform, who, tenant_id)

