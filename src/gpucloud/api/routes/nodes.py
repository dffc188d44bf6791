"""/v1/nodes: the fleet and its devices (allocations of other tenants are anonymised)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.api.deps import PlatformDep, PrincipalDep
from gpucloud.api.routing import api_router
from gpucloud.api.views import nodes_out
from gpucloud.core.errors import NotFound
from gpucloud.schemas import NodeOut, Page, QuarantineIn
from gpucloud.store.inventory import quarantine_node, return_device, return_node
from gpucloud.store.models import Node
from gpucloud.store.paging import paginate

router = api_router(prefix="/v1/nodes", tags=["nodes"])


@router.get("", response_model=Page[NodeOut])
def list_nodes(
    platform: PlatformDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 500,
    cursor: str | None = None,
) -> Page[NodeOut]:
    with platform.ctx.db.read() as session:
        page = paginate(session, select(Node), Node.id, limit, cursor, newest_first=False)
        return Page[NodeOut](
            items=nodes_out(session, who, page.items), next_cursor=page.next_cursor
        )


@router.get("/{node_id}", response_model=NodeOut)
def get_node(node_id: str, platform: PlatformDep, who: PrincipalDep) -> NodeOut:
    with platform.ctx.db.read() as session:
        return nodes_out(session, who, [_node(session, node_id)])[0]


@router.post("/{node_id}/quarantine", response_model=NodeOut)
def quarantine(
    node_id: str, body: QuarantineIn, platform: PlatformDep, who: PrincipalDep
) -> NodeOut:
    """Take a node out of service (operators): running work goes on, nothing new lands there,
    and the engine is told (Slurm drains it with the reason)."""
    who.require_operator("quarantining nodes")
    with platform.ctx.db.write() as session:
        node = _node(session, node_id)
        quarantine_node(session, node, body.reason, who.user_name, platform.ctx.clock.now())
    platform.wake()
    return get_node(node_id, platform, who)


@router.post("/{node_id}/return", response_model=NodeOut)
def return_to_service(
    node_id: str, platform: PlatformDep, who: PrincipalDep, gpu: int | None = None
) -> NodeOut:
    """Put a quarantined node back into service, or with ``gpu`` one of its GPUs (also a
    retired one) (operators)."""
    who.require_operator("returning nodes to service")
    with platform.ctx.db.write() as session:
        node = _node(session, node_id)
        now = platform.ctx.clock.now()
        if gpu is None:
            return_node(session, node, who.user_name, now)
        elif not return_device(session, node, gpu, who.user_name, now):
            raise NotFound("GPU", f"{node_id}/gpu{gpu}")
    platform.wake()
    return get_node(node_id, platform, who)


def _node(session: Session, node_id: str) -> Node:
    node = session.get(Node, node_id)
    if node is None:
        raise NotFound("node", node_id)
    return node
