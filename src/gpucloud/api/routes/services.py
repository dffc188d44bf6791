"""/v1/services: create, list, show, update (a rolling update), delete, the public key, and a
replica's logs. The endpoint itself is ``api.service_router`` (``/s/<tenant>/<name>/``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from gpucloud.api import idempotent, service_router
from gpucloud.api.deps import Platform, PlatformDep, PrincipalDep
from gpucloud.api.routes.jobs import _log_stream, check_can_run
from gpucloud.api.routing import api_router
from gpucloud.api.views import event_out
from gpucloud.billing.pricing import price_per_hour_minor, version_at
from gpucloud.controllers.service_traffic import TRAFFIC
from gpucloud.core.errors import NotFound
from gpucloud.core.services import (
    ReplicaState,
    ServiceSpec,
    parse_service_spec,
    replica_job_name,
)
from gpucloud.core.tenancy import Principal, Role
from gpucloud.schemas import Page
from gpucloud.schemas.services import (
    ReplicaOut,
    ServiceCreate,
    ServiceKey,
    ServiceOut,
    ServiceUpdate,
)
from gpucloud.store import services as store
from gpucloud.store.accounts import check_name
from gpucloud.store.billing import footprint_of_spec, priced_footprint
from gpucloud.store.models import Tenant
from gpucloud.store.models_services import Service, ServiceReplica
from gpucloud.store.prices import load_versions

router = api_router(tags=["services"])
router.include_router(service_router.router)
SHOWN_EVENTS = 20


@router.post("/v1/services", status_code=201, response_model=ServiceOut,
             responses={409: {"description": "the name is taken"},
                        402: {"description": "the wallet does not cover the admission runway"}})
def create_service(
    body: ServiceCreate,
    platform: PlatformDep,
    who: PrincipalDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Its first replica starts at once (a service with min_replicas 0 then scales to zero
    when idle). A public service's key comes from ``POST /v1/services/{ref}/key``."""
    who.require(Role.MEMBER, "creating services")
    check_name("service", body.name)
    spec = body.spec()
    check_can_run(platform, who, spec.job_spec(replica_job_name(body.name, 1), 0))
    now = platform.ctx.clock.now()

    def action(session: Session) -> Any:
        service, _ = store.create_service(session, platform.ctx.ids, who, body.name, spec,
                                          False, now)
        if body.public:
            service.public = True  # no key yet: only the key route hands one out
        return service_out(session, platform, service).model_dump(mode="json")

    return idempotent.create(platform, who, idempotency_key, "/v1/services",
                             body.model_dump(mode="json"), action)


@router.get("/v1/services", response_model=Page[ServiceOut])
def list_services(
    platform: PlatformDep,
    who: PrincipalDep,
    deleted: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> Page[ServiceOut]:
    with platform.ctx.db.read() as session:
        page = store.list_services(session, who, limit, cursor, include_deleted=deleted)
        return Page[ServiceOut](items=[service_out(session, platform, s) for s in page.items],
                                next_cursor=page.next_cursor)


@router.get("/v1/services/{ref}", response_model=ServiceOut)
def get_service(ref: str, platform: PlatformDep, who: PrincipalDep) -> ServiceOut:
    """By id or name, with its replicas and latest events."""
    with platform.ctx.db.read() as session:
        service = store.get_service(session, who, ref)
        return service_out(session, platform, service, detail=True)


@router.patch("/v1/services/{ref}", response_model=ServiceOut)
def update_service(ref: str, change: ServiceUpdate, platform: PlatformDep,
                   who: PrincipalDep) -> ServiceOut:
    """A new command, compute or environment rolls out replica by replica (a new one READY
    before an old one is drained: no request fails); scaling fields apply at once."""
    with platform.ctx.db.read() as session:
        service = store.get_service(session, who, ref)
        spec = parse_service_spec(change.merged(store.spec_of(service)))
    who.require(Role.MEMBER, "updating services")
    check_can_run(platform, who, spec.job_spec(replica_job_name(service.name, 1), 0))
    return _act(platform, who, ref, "updating services",
                lambda s, svc, now: store.update_service(s, svc, who, spec, now))


@router.delete("/v1/services/{ref}", response_model=ServiceOut)
def delete_service(ref: str, platform: PlatformDep, who: PrincipalDep) -> ServiceOut:
    """Its replicas are drained and stopped; then it is DELETED (its name is free again)."""
    return _act(platform, who, ref, "deleting services",
                lambda s, svc, now: store.request_delete(s, svc, who, now))


@router.post("/v1/services/{ref}/key", response_model=ServiceKey)
def issue_key(ref: str, platform: PlatformDep, who: PrincipalDep) -> ServiceKey:
    """Make the service public with a new key (the previous key stops working). Shown once."""
    keys: list[str] = []

    def change(session: Session, service: Service, now: Any) -> None:
        key = store.set_public(session, service, True, now)
        assert key is not None
        keys[:] = [key]

    service = _act(platform, who, ref, "issuing service keys", change)
    return ServiceKey(service_id=service.id, key=keys[0])


@router.delete("/v1/services/{ref}/key", response_model=ServiceOut)
def revoke_key(ref: str, platform: PlatformDep, who: PrincipalDep) -> ServiceOut:
    """Private again: only callers of its tenant reach it."""
    return _act(platform, who, ref, "revoking service keys",
                lambda s, svc, now: store.set_public(s, svc, False, now))


@router.get("/v1/services/{ref}/logs", response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {}}}})
def service_logs(
    ref: str,
    request: Request,
    platform: PlatformDep,
    who: PrincipalDep,
    replica: Annotated[int | None, Query(ge=1)] = None,
    follow: bool = False,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """One replica's output (``replica``: its ordinal; default the newest living one)."""
    with platform.ctx.db.read() as session:
        service = store.get_service(session, who, ref)
        if replica is not None:
            job_id = store.replica_by_ordinal(session, service, replica).job_id
        else:
            living = store.replicas(session, service.id) or store.replicas(
                session, service.id, ended=True)
            if not living:
                raise NotFound(f"replica of service {service.name}", "any")
            job_id = living[-1].job_id
    return StreamingResponse(_log_stream(platform, request, job_id, follow, offset),
                             media_type="text/plain; charset=utf-8")


def _act(platform: Platform, who: Principal, ref: str, what: str,
         change: Callable[[Session, Service, Any], Any]) -> ServiceOut:
    with platform.ctx.db.read() as session:
        service_id = store.get_service(session, who, ref).id  # 404 before 403
    who.require(Role.MEMBER, what)
    for attempt in range(5):  # the controller writes the same row (optimistic lock)
        try:
            with platform.ctx.db.write() as session:
                service = store.get_service(session, who, service_id)
                change(session, service, platform.ctx.clock.now())
            break
        except StaleDataError:
            if attempt == 4:
                raise
    platform.wake()
    return get_service(service_id, platform, who)


# --- the view -----------------------------------------------------------------------------------


def service_out(session: Session, platform: Platform, service: Service,
                detail: bool = False) -> ServiceOut:
    spec: ServiceSpec = store.spec_of(service)
    now = platform.ctx.clock.now()
    version = version_at(load_versions(session), now)
    fp = footprint_of_spec(spec.job_spec(replica_job_name(service.name, 1), 0))
    price = price_per_hour_minor(version, priced_footprint(session, version, fp))
    replicas = store.replicas(session, service.id)
    tenant = session.get_one(Tenant, service.tenant_id)
    events = ([event_out(e) for e in store.latest_events(session, service.id, SHOWN_EVENTS)]
              if detail else [])
    return ServiceOut(
        id=service.id, name=service.name, tenant_id=service.tenant_id,
        user_id=service.user_id, state=service.state, reason=service.reason,
        message=service.message, path=f"/s/{tenant.name}/{service.name}/",
        public=service.public, generation=service.generation,
        desired_replicas=service.desired_replicas,
        ready_replicas=sum(1 for r in replicas if r.state is ReplicaState.READY),
        spec=spec, price_per_replica_hour_minor=price, currency=version.currency,
        replicas=[replica_out(r) for r in replicas], created_at=service.created_at,
        updated_at=service.updated_at, events=events,
    )


def replica_out(replica: ServiceReplica) -> ReplicaOut:
    return ReplicaOut(
        ordinal=replica.ordinal, id=replica.id, generation=replica.generation,
        state=replica.state, message=replica.message, job_id=replica.job_id, host=replica.host,
        port=replica.port, in_flight=TRAFFIC.outstanding(replica.id),
        created_at=replica.created_at, ready_at=replica.ready_at, ended_at=replica.ended_at)
