"""/v1/instances: create, list, show, stop, start, delete, utilisation reports; the tenant's idle
policy at /v1/instance-idle-policy. The shell and Jupyter routes are in ``api.terminal`` and
``api.jupyter_proxy``."""

from __future__ import annotations

import importlib.util
from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from gpucloud.api import idempotent
from gpucloud.api.deps import Platform, PlatformDep, PrincipalDep, visible_tenant
from gpucloud.api.routes.jobs import check_can_run
from gpucloud.api.routing import api_router
from gpucloud.api.views import event_out
from gpucloud.billing.leases import LeaseKind
from gpucloud.billing.leases import price_per_hour_minor as lease_price_per_hour
from gpucloud.billing.pricing import price_per_hour_minor, version_at
from gpucloud.core.errors import InvalidRequest, NotFound
from gpucloud.core.instances import IdlePolicy, InstanceSpec, InstanceState, jupyter_base_url
from gpucloud.core.tenancy import Principal, Role
from gpucloud.engines import instance_host
from gpucloud.schemas import Page
from gpucloud.schemas.instances import (
    IdlePolicyIn,
    IdlePolicyOut,
    InstanceOut,
    InstanceStart,
    UtilizationReport,
)
from gpucloud.store import instances as store
from gpucloud.store.billing import footprint_of, priced_footprint
from gpucloud.store.jobs import active_allocations
from gpucloud.store.models_instances import Instance, InstanceIdlePolicy
from gpucloud.store.prices import load_versions

router = api_router(tags=["instances"])
SHOWN_EVENTS = 20


@router.post("/v1/instances", status_code=201, response_model=InstanceOut,
             responses={409: {"description": "the name is taken"},
                        402: {"description": "the wallet does not cover the admission runway"}})
def create_instance(
    spec: InstanceSpec,
    platform: PlatformDep,
    who: PrincipalDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    who.require(Role.MEMBER, "creating instances")
    if spec.jupyter and importlib.util.find_spec("jupyter_server") is None:
        raise InvalidRequest("Jupyter is not installed on this control plane: install "
                             "jupyter_server (pip install jupyter_server) or leave out jupyter",
                             "jupyter")
    check_can_run(platform, who, spec.job_spec(["true"], {}, no_gpu=False))
    now = platform.ctx.clock.now()

    def action(session: Session) -> Any:
        instance = store.create_instance(session, platform.ctx.ids, who, spec, now)
        return instance_out(session, platform, instance).model_dump(mode="json")

    response = idempotent.create(platform, who, idempotency_key, "/v1/instances",
                                 spec.model_dump(mode="json"), action)
    platform.wake()
    return response


@router.get("/v1/instances", response_model=Page[InstanceOut])
def list_instances(
    platform: PlatformDep,
    who: PrincipalDep,
    deleted: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> Page[InstanceOut]:
    with platform.ctx.db.read() as session:
        page = store.list_instances(session, who, limit, cursor, include_deleted=deleted)
        return Page[InstanceOut](items=[instance_out(session, platform, i) for i in page.items],
                                 next_cursor=page.next_cursor)


@router.get("/v1/instances/{ref}", response_model=InstanceOut)
def get_instance(ref: str, platform: PlatformDep, who: PrincipalDep) -> InstanceOut:
    """By id or name. With its latest events and the disk's measured use."""
    with platform.ctx.db.read() as session:
        instance = store.get_instance(session, who, ref)
        shown = instance_out(session, platform, instance, detail=True)
    return shown


@router.post("/v1/instances/{ref}/stop", response_model=InstanceOut)
def stop_instance(ref: str, platform: PlatformDep, who: PrincipalDep) -> InstanceOut:
    """Its job ends (GPUs released at once); the disk is kept and billed as storage."""
    return _act(platform, who, ref, "stopping instances",
                lambda s, i, now: store.request_stop(s, i, who, now))


@router.post("/v1/instances/{ref}/start", response_model=InstanceOut)
def start_instance(ref: str, platform: PlatformDep, who: PrincipalDep,
                   body: InstanceStart | None = None) -> InstanceOut:
    """Start a stopped instance; ``no_gpu`` starts it without GPUs at the CPU price."""
    no_gpu = body.no_gpu if body is not None else False
    with platform.ctx.db.read() as session:
        instance = store.get_instance(session, who, ref)
        spec = store.spec_of(instance)
    who.require(Role.MEMBER, "starting instances")
    check_can_run(platform, who, spec.job_spec(["true"], {}, no_gpu=no_gpu))
    return _act(platform, who, ref, "starting instances",
                lambda s, i, now: store.request_start(s, i, who, no_gpu, now))


@router.delete("/v1/instances/{ref}", response_model=InstanceOut)
def delete_instance(ref: str, platform: PlatformDep, who: PrincipalDep) -> InstanceOut:
    """Stops it if running, then deletes it and its disk (volumes are kept)."""
    return _act(platform, who, ref, "deleting instances",
                lambda s, i, now: store.request_delete(s, i, who, now))


@router.post("/v1/instances/{ref}/utilization", response_model=InstanceOut)
def report_utilization(ref: str, report: UtilizationReport, platform: PlatformDep,
                       who: PrincipalDep) -> InstanceOut:
    """The GPU utilisation of a simulated instance (real GPUs are read from NVML)."""
    return _act(platform, who, ref, "reporting utilisation",
                lambda s, i, now: store.report_utilization(s, i, report.gpu_util_pct, now))


def _act(platform: Platform, who: Principal, ref: str, what: str, change: Any) -> InstanceOut:
    from sqlalchemy.orm.exc import StaleDataError

    with platform.ctx.db.read() as session:
        instance_id = store.get_instance(session, who, ref).id  # 404 before 403
    who.require(Role.MEMBER, what)
    for attempt in range(5):  # the controller may write the same row (optimistic lock)
        try:
            with platform.ctx.db.write() as session:
                instance = store.get_instance(session, who, instance_id)
                change(session, instance, platform.ctx.clock.now())
            break
        except StaleDataError:
            if attempt == 4:
                raise
    platform.wake()
    return get_instance(instance_id, platform, who)


# --- the tenant's idle policy -------------------------------------------------------------------


@router.get("/v1/instance-idle-policy", response_model=IdlePolicyOut)
def get_idle_policy(platform: PlatformDep, who: PrincipalDep,
                    tenant: str | None = None) -> IdlePolicyOut:
    with platform.ctx.db.read() as session:
        tenant_id = visible_tenant(session, who, tenant)
        row = session.get(InstanceIdlePolicy, tenant_id)
        if row is None:
            raise NotFound("idle policy of tenant", tenant or who.tenant_name)
        return _policy_out(row)


@router.put("/v1/instance-idle-policy", response_model=IdlePolicyOut)
def set_idle_policy(body: IdlePolicyIn, platform: PlatformDep, who: PrincipalDep,
                    tenant: str | None = None) -> IdlePolicyOut:
    """Tenant admins: GPU instances idle below ``below_pct`` for ``idle`` get a warning, and
    ``grace`` later are switched to no-GPU mode or stopped."""
    policy = IdlePolicy(body.below_pct, body.idle_s, body.grace_s, body.action)
    with platform.ctx.db.write() as session:
        tenant_id = visible_tenant(session, who, tenant)
        who.require(Role.ADMIN, "setting the idle policy")
        store.set_idle_policy(session, tenant_id, policy, who.user_name,
                              platform.ctx.clock.now())
        session.flush()
        return _policy_out(session.get_one(InstanceIdlePolicy, tenant_id))


@router.delete("/v1/instance-idle-policy")
def clear_idle_policy(platform: PlatformDep, who: PrincipalDep,
                      tenant: str | None = None) -> dict[str, bool]:
    with platform.ctx.db.write() as session:
        tenant_id = visible_tenant(session, who, tenant)
        who.require(Role.ADMIN, "removing the idle policy")
        if not store.clear_idle_policy(session, tenant_id):
            raise NotFound("idle policy of tenant", tenant or who.tenant_name)
    return {"removed": True}


def _policy_out(row: InstanceIdlePolicy) -> IdlePolicyOut:
    return IdlePolicyOut(tenant_id=row.tenant_id, below_pct=row.below_pct, idle_s=row.idle_s,
                         grace_s=row.grace_s, action=row.action, updated_by=row.updated_by,
                         updated_at=row.updated_at)


# --- the view -----------------------------------------------------------------------------------


def instance_out(session: Session, platform: Platform, instance: Instance,
                 detail: bool = False) -> InstanceOut:
    spec = store.spec_of(instance)
    now = platform.ctx.clock.now()
    job = store.current_job(session, instance)
    allocations = active_allocations(session, job.id) if job is not None else []
    version = version_at(load_versions(session), now)
    state = InstanceState(instance.state)
    if job is not None and not job.state.terminal:
        price = price_per_hour_minor(version, priced_footprint(session, version,
                                                               footprint_of(job)))
    elif state in (InstanceState.STOPPED, InstanceState.FAILED):
        price = lease_price_per_hour(version, LeaseKind.STORAGE, "", instance.disk_gib)
    else:
        price = 0
    saved, saved_s = store.savings(instance, now)
    events = []
    if detail:
        events = [event_out(e) for e in store.latest_events(session, instance.id, SHOWN_EVENTS)]
    used = (instance_host.disk_used_bytes(platform.ctx.engine, instance.id)
            if detail and state is not InstanceState.DELETED else None)
    return InstanceOut(
        id=instance.id, name=instance.name, tenant_id=instance.tenant_id,
        user_id=instance.user_id, state=state, desired=instance.desired,
        reason=instance.reason, message=instance.message, gpus=instance.gpus,
        gpu_type=instance.gpu_type, cpus=spec.cpus, memory_mib=spec.memory_mib,
        disk_gib=instance.disk_gib, image=spec.image, volumes=list(spec.volumes),
        jupyter=spec.jupyter,
        jupyter_path=jupyter_base_url(instance.id) if spec.jupyter else None,
        no_gpu=instance.no_gpu, job_id=instance.current_job_id,
        node_id=allocations[0].node_id if allocations else None,
        devices=[d for a in allocations for d in a.device_ids], runs=instance.runs,
        price_per_hour_minor=price, currency=version.currency,
        utilization_pct=instance.utilization_pct, utilization_at=instance.utilization_at,
        idle_since=instance.low_since, idle_warned_at=instance.idle_warned_at,
        saved_minor=saved, saved_seconds=saved_s, disk_used_bytes=used,
        created_at=instance.created_at, started_at=instance.started_at,
        stopped_at=instance.stopped_at, events=events,
    )
