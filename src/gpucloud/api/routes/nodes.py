"""/v1/nodes: the fleet and its devices (allocations of other tenants are anonymised)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from gpucloud.api.deps import PlatformDep, PrincipalDep
from gpucloud.api.views import nodes_out
from gpucloud.core.errors import NotFound
from gpucloud.schemas import NodeOut, Page
from gpucloud.store.models import Node
from gpucloud.store.paging import paginate

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])


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
        node = session.get(Node, node_id)
        if node is None:
            raise NotFound("node", node_id)
        return nodes_out(session, who, [node])[0]
