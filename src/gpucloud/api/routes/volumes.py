"""/v1/volumes: create with a size, list, show, grow, delete (only when detached); the tenant's
quota at /v1/volume-quota."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from gpucloud.api import idempotent
from gpucloud.api.deps import Platform, PlatformDep, PrincipalDep, visible_tenant
from gpucloud.api.routing import api_router
from gpucloud.api.views import event_out
from gpucloud.billing.leases import LeaseKind, price_per_hour_minor
from gpucloud.billing.pricing import version_at
from gpucloud.core.tenancy import Role
from gpucloud.core.volumes import (
    VolumeState,
    check_volume_name,
    parse_size_gib,
    volume_env_name,
)
from gpucloud.schemas import Page
from gpucloud.schemas.workspaces import (
    VolumeCreate,
    VolumeGrow,
    VolumeOut,
    VolumeQuotaIn,
    VolumeQuotaOut,
)
from gpucloud.store import volumes as store
from gpucloud.store.models_workspaces import Volume, VolumeQuota
from gpucloud.store.prices import load_versions

router = api_router(tags=["volumes"])
SHOWN_EVENTS = 20


@router.post("/v1/volumes", status_code=201, response_model=VolumeOut,
             responses={409: {"description": "the name is taken"},
                        422: {"description": "a bad size, or above the tenant's quota"}})
def create_volume(body: VolumeCreate, platform: PlatformDep, who: PrincipalDep,
                  idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Billed per GiB-hour of its size from now until it is deleted."""
    who.require(Role.MEMBER, "creating volumes")
    name, size_gib = check_volume_name(body.name), parse_size_gib(body.size)
    now = platform.ctx.clock.now()

    def action(session: Session) -> Any:
        volume = store.create_volume(session, platform.ctx.ids, who, name, size_gib, now)
        return volume_out(session, platform, volume).model_dump(mode="json")

    return idempotent.create(platform, who, idempotency_key, "/v1/volumes",
                             body.model_dump(mode="json"), action)


@router.get("/v1/volumes", response_model=Page[VolumeOut])
def list_volumes(platform: PlatformDep, who: PrincipalDep, deleted: bool = False,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 cursor: str | None = None) -> Page[VolumeOut]:
    with platform.ctx.db.read() as session:
        page = store.list_volumes(session, who, limit, cursor, include_deleted=deleted)
        return Page[VolumeOut](items=[volume_out(session, platform, v) for v in page.items],
                               next_cursor=page.next_cursor)


@router.get("/v1/volumes/{ref}", response_model=VolumeOut)
def get_volume(ref: str, platform: PlatformDep, who: PrincipalDep) -> VolumeOut:
    """By id or name, with what holds it and its latest events."""
    with platform.ctx.db.read() as session:
        return volume_out(session, platform, store.get_volume(session, who, ref), detail=True)


@router.post("/v1/volumes/{ref}/grow", response_model=VolumeOut)
def grow_volume(ref: str, body: VolumeGrow, platform: PlatformDep,
                who: PrincipalDep) -> VolumeOut:
    """Larger only (a smaller size is refused: data may already use it)."""
    with platform.ctx.db.read() as session:
        volume_id = store.get_volume(session, who, ref).id  # 404 before 403
    who.require(Role.MEMBER, "growing volumes")
    size_gib = parse_size_gib(body.size)
    with platform.ctx.db.write() as session:
        volume = store.get_volume(session, who, volume_id)
        store.grow_volume(session, platform.ctx.ids, volume, size_gib, platform.ctx.clock.now())
    return get_volume(volume_id, platform, who)


@router.delete("/v1/volumes/{ref}", response_model=VolumeOut,
               responses={409: {"description": "a workload holds it"}})
def delete_volume(ref: str, platform: PlatformDep, who: PrincipalDep) -> VolumeOut:
    """Refused while a job or instance holds it. Billing ends now; its data is removed."""
    with platform.ctx.db.read() as session:
        volume_id = store.get_volume(session, who, ref).id
    who.require(Role.MEMBER, "deleting volumes")
    with platform.ctx.db.write() as session:
        volume = store.get_volume(session, who, volume_id)
        store.delete_volume(session, volume, who, platform.ctx.clock.now())
    platform.wake()
    return get_volume(volume_id, platform, who)


@router.get("/v1/volume-quota", response_model=VolumeQuotaOut)
def get_quota(platform: PlatformDep, who: PrincipalDep,
              tenant: str | None = None) -> VolumeQuotaOut:
    """The GiB of volumes the tenant may hold at once, and how many it holds."""
    with platform.ctx.db.read() as session:
        return _quota_out(session, visible_tenant(session, who, tenant))


@router.put("/v1/volume-quota", response_model=VolumeQuotaOut)
def set_quota(body: VolumeQuotaIn, platform: PlatformDep, who: PrincipalDep,
              tenant: str | None = None) -> VolumeQuotaOut:
    """Operators: the tenant's own quota (``gib: null`` returns it to the default). Volumes
    already above a lowered quota stay; only creating and growing are refused."""
    with platform.ctx.db.write() as session:
        tenant_id = visible_tenant(session, who, tenant)
        who.require_operator("setting volume quotas")
        store.set_quota(session, tenant_id, body.gib, who.user_name, platform.ctx.clock.now())
        session.flush()
        return _quota_out(session, tenant_id)


def _quota_out(session: Session, tenant_id: str) -> VolumeQuotaOut:
    return VolumeQuotaOut(tenant_id=tenant_id, quota_gib=store.quota_gib(session, tenant_id),
                          used_gib=store.tenant_gib(session, tenant_id),
                          own=session.get(VolumeQuota, tenant_id) is not None)


def volume_out(session: Session, platform: Platform, volume: Volume,
               detail: bool = False) -> VolumeOut:
    version = version_at(load_versions(session), platform.ctx.clock.now())
    living = volume.state is not VolumeState.DELETED
    price = price_per_hour_minor(version, LeaseKind.STORAGE, "", volume.size_gib) if living else 0
    events = ([event_out(e) for e in store.latest_events(session, volume.id, SHOWN_EVENTS)]
              if detail else [])
    return VolumeOut(
        id=volume.id, name=volume.name, tenant_id=volume.tenant_id, state=volume.state,
        size_gib=volume.size_gib, used_bytes=volume.used_bytes, measured_at=volume.measured_at,
        env=volume_env_name(volume.name),
        attached_to=store.holders(session, volume) if detail and living else [],
        price_per_hour_minor=price, currency=version.currency, created_by=volume.created_by,
        created_at=volume.created_at, deleted_at=volume.deleted_at, events=events,
    )
