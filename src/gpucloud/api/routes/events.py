"""/v1/events: the audit trail the caller may see, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from gpucloud.api.deps import PlatformDep, PrincipalDep
from gpucloud.api.routing import api_router
from gpucloud.api.views import event_out
from gpucloud.schemas import EventOut, Page
from gpucloud.store.jobs import visible_events

router = api_router(prefix="/v1/events", tags=["events"])


@router.get("", response_model=Page[EventOut])
def list_events(
    platform: PlatformDep,
    who: PrincipalDep,
    object_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> Page[EventOut]:
    with platform.ctx.db.read() as session:
        page = visible_events(session, who, limit, cursor, object_id)
        return Page[EventOut](
            items=[event_out(e) for e in page.items], next_cursor=page.next_cursor
        )
