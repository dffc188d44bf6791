"""Operators: inject faults into simulated devices (drills), the Xid policy, the fault feed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Query
from sqlalchemy import select

from gpucloud.api.deps import PlatformDep, PrincipalDep
from gpucloud.api.routing import api_router
from gpucloud.api.views import fault_out
from gpucloud.core.errors import InvalidRequest, NotFound
from gpucloud.core.faults import SignalKind, parse_xid_policy, policy_document
from gpucloud.engines.base import FaultInjector
from gpucloud.schemas import FaultInjection, FaultOut, Page, XidPolicyOut
from gpucloud.store.health import XID_POLICY_KEY, set_xid_policy, xid_policy
from gpucloud.store.models import Fault, Node, PlatformSetting
from gpucloud.store.paging import paginate

router = api_router(tags=["health"])
INJECTABLE = (SignalKind.XID, SignalKind.ECC, SignalKind.HEARTBEAT_LOSS)


@router.post("/v1/debug/faults", status_code=202)
def inject_fault(body: FaultInjection, platform: PlatformDep, who: PrincipalDep) -> dict[str, str]:
    """A fault on a simulated node, through the same path as a real one (operators)."""
    who.require_operator("injecting faults")
    try:
        kind = SignalKind(body.kind)
    except ValueError:
        kind = None
    if kind not in INJECTABLE:
        raise InvalidRequest(f"kind {body.kind!r}: one of "
                             f"{', '.join(k.value for k in INJECTABLE)}", "kind")
    if (kind is SignalKind.XID) != (body.xid is not None):
        raise InvalidRequest("give an Xid code with kind xid, and only then", "xid")
    with platform.ctx.db.read() as session:
        if session.get(Node, body.node) is None:
            raise NotFound("node", body.node)
    engine = platform.ctx.engine
    if not isinstance(engine, FaultInjector):
        raise InvalidRequest(f"the {engine.name} engine takes no injected faults", "node")
    engine.inject_fault(body.node, kind, body.gpu, body.xid, body.duration_s)
    platform.wake()
    return {"status": "injected"}


@router.get("/v1/admin/xid-policy", response_model=XidPolicyOut)
def get_policy(platform: PlatformDep, who: PrincipalDep) -> XidPolicyOut:
    who.require_operator("reading the Xid policy")
    with platform.ctx.db.read() as session:
        custom = session.get(PlatformSetting, XID_POLICY_KEY) is not None
        return XidPolicyOut(policy=policy_document(xid_policy(session)), default=not custom)


@router.put("/v1/admin/xid-policy", response_model=XidPolicyOut)
def put_policy(
    platform: PlatformDep,
    who: PrincipalDep,
    policy: Annotated[dict[str, Any], Body(embed=True)],
) -> XidPolicyOut:
    """Replace the whole table: ``{"policy": {"79": "drain-node", "13": {"action":
    "application", "meaning": "..."}}}``. Codes left out become unknown (they drain)."""
    who.require_operator("changing the Xid policy")
    table = parse_xid_policy(policy)
    with platform.ctx.db.write() as session:
        set_xid_policy(session, table, platform.ctx.clock.now())
    return get_policy(platform, who)


@router.delete("/v1/admin/xid-policy", response_model=XidPolicyOut)
def reset_policy(platform: PlatformDep, who: PrincipalDep) -> XidPolicyOut:
    """Back to the defaults (NVIDIA's Xid catalogue)."""
    who.require_operator("changing the Xid policy")
    with platform.ctx.db.write() as session:
        set_xid_policy(session, None, platform.ctx.clock.now())
    return get_policy(platform, who)


@router.get("/v1/faults", response_model=Page[FaultOut])
def list_faults(
    platform: PlatformDep,
    who: PrincipalDep,
    node: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> Page[FaultOut]:
    """Every health signal and what was done about it, newest first (operators)."""
    who.require_operator("reading the fault feed")
    with platform.ctx.db.read() as session:
        query = select(Fault) if node is None else select(Fault).where(Fault.node_id == node)
        page = paginate(session, query, Fault.id, limit, cursor, newest_first=True)
        return Page[FaultOut](items=[fault_out(f) for f in page.items],
                              next_cursor=page.next_cursor)
