"""Service commands and queries on behalf of a caller; ``set_state`` and ``set_replica_state``
are the only doors through which a service or a replica changes state (each with its event)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from gpucloud.core.errors import Conflict, NotFound
from gpucloud.core.ids import IdFactory
from gpucloud.core.services import (
    ENDED_REPLICA,
    ReplicaState,
    ServiceSpec,
    ServiceState,
    check_replica_transition,
    check_service_transition,
    replica_job_name,
)
from gpucloud.core.states import Workload
from gpucloud.core.tenancy import Principal, Role
from gpucloud.store.accounts import check_name, hash_token
from gpucloud.store.jobs import create_job
from gpucloud.store.models import Event, Job, Tenant, User
from gpucloud.store.models_services import Service, ServiceReplica
from gpucloud.store.paging import Page, paginate
from gpucloud.store.transitions import record_event

OBJECT_KIND = "service"
KEY_PREFIX = "gcs_"  # a service key, told apart from user tokens at a glance


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_service(session: Session, ids: IdFactory, who: Principal, name: str,
                   spec: ServiceSpec, public: bool, now: datetime) -> tuple[Service, str | None]:
    """The service, and its key (shown once) when public."""
    check_name("service", name)
    taken = session.scalar(select(Service.id).where(Service.tenant_id == who.tenant_id,
                                                    Service.live_name == name))
    if taken is not None:
        raise Conflict(f"a service named {name!r} already exists ({taken}); choose another "
                       "name or delete that one")
    key = new_key() if public else None
    service = Service(
        id=ids.new("svc", now), tenant_id=who.tenant_id, user_id=who.user_id, name=name,
        live_name=name, state=ServiceState.STARTING, deleting=False, reason="CREATED",
        message="", spec=spec.model_dump(mode="json"), generation=1,
        desired_replicas=max(1, spec.min_replicas), public=public,
        key_hash=hash_token(key) if key else None, replicas_started=0,
        last_request_at=now,  # a new service starts one replica, then may scale to zero
        created_at=now, updated_at=now,
    )
    session.add(service)
    _note(session, service, "service.state", now, f"created by {who.user_name}",
          after=ServiceState.STARTING.value, reason="CREATED")
    session.flush()
    return service, key


def spec_of(service: Service) -> ServiceSpec:
    return ServiceSpec.model_validate(service.spec)


def _visible(who: Principal) -> Select[Any]:
    query = select(Service)
    return query if who.is_operator else query.where(Service.tenant_id == who.tenant_id)


def get_service(session: Session, who: Principal, ref: str) -> Service:
    """By id, or by name among the caller's living services. Another tenant's is a 404."""
    found: Service | None = session.scalar(_visible(who).where(
        or_(Service.id == ref,
            (Service.live_name == ref) & (Service.tenant_id == who.tenant_id))))
    if found is None:
        raise NotFound("service", ref)
    return found


def list_services(session: Session, who: Principal, limit: int, cursor: str | None,
                  include_deleted: bool = False) -> Page[Service]:
    query = _visible(who)
    if not include_deleted:
        query = query.where(Service.state != ServiceState.DELETED)
    return paginate(session, query, Service.id, limit, cursor)


def routed(session: Session, tenant_name: str, name: str) -> Service | None:
    """The living service a route ``/s/<tenant>/<name>/`` names (the router checks access)."""
    found: Service | None = session.scalar(
        select(Service).join(Tenant, Tenant.id == Service.tenant_id)
        .where(Tenant.name == tenant_name, Service.live_name == name))
    return found


def replicas(session: Session, service_id: str, ended: bool = False) -> list[ServiceReplica]:
    query = select(ServiceReplica).where(ServiceReplica.service_id == service_id)
    if not ended:
        query = query.where(ServiceReplica.state.not_in([s.value for s in ENDED_REPLICA]))
    return list(session.scalars(query.order_by(ServiceReplica.ordinal)))


def replica_by_ordinal(session: Session, service: Service, ordinal: int) -> ServiceReplica:
    found = session.scalar(select(ServiceReplica).where(
        ServiceReplica.service_id == service.id, ServiceReplica.ordinal == ordinal))
    if found is None:
        raise NotFound(f"replica of service {service.name}", str(ordinal))
    return found


def latest_events(session: Session, service_id: str, limit: int) -> list[Event]:
    rows = session.scalars(
        select(Event).where(Event.object_kind == OBJECT_KIND, Event.object_id == service_id)
        .order_by(Event.id.desc()).limit(limit))
    return list(reversed(list(rows)))


# --- the doors ----------------------------------------------------------------------------------


def set_state(session: Session, service: Service, to: ServiceState, reason: str,
              now: datetime, message: str = "") -> None:
    current = ServiceState(service.state)
    check_service_transition(service.id, current, to)
    _note(session, service, "service.state", now, message, before=current.value,
          after=to.value, reason=reason)
    service.state, service.reason, service.message = to, reason, message
    service.updated_at = now
    if to is ServiceState.DELETED:
        service.deleted_at, service.live_name = now, None


def set_replica_state(session: Session, service: Service, replica: ServiceReplica,
                      to: ReplicaState, now: datetime, message: str = "") -> None:
    current = ReplicaState(replica.state)
    check_replica_transition(replica.id, current, to)
    _note(session, service, "service.replica", now,
          f"replica {replica.ordinal} (v{replica.generation}): {message}".rstrip(": "),
          before=current.value, after=to.value, reason=to.value)
    replica.state, replica.message = to, message
    if to is ReplicaState.READY:
        replica.ready_at = now
    if to is ReplicaState.DRAINING:
        replica.draining_at = now
    if to in ENDED_REPLICA:
        replica.ended_at = now


# --- what users ask ---------------------------------------------------------------------------


def update_service(session: Session, service: Service, who: Principal, spec: ServiceSpec,
                   now: datetime) -> bool:
    """A new generation when the spec changed (the controller rolls it out); False if not."""
    _require_living(service)
    if spec == spec_of(service):
        return False
    old = spec_of(service)
    service.spec = spec.model_dump(mode="json")
    service.updated_at = now
    rollout = _rolls(old, spec)
    if rollout:
        service.generation += 1
    service.desired_replicas = min(max(service.desired_replicas, spec.min_replicas),
                                   spec.max_replicas)
    what = f"rolling out v{service.generation}" if rollout else "scaling settings changed"
    _note(session, service, "service.updated", now, f"updated by {who.user_name}: {what}",
          reason="UPDATED")
    return True


def _rolls(old: ServiceSpec, new: ServiceSpec) -> bool:
    """Whether replicas must be replaced: what runs changed, not only how it scales."""
    scaling = {"min_replicas", "max_replicas", "target_rps", "target_concurrency",
               "scale_to_zero_s", "stabilization_s"}
    return old.model_dump(exclude=scaling) != new.model_dump(exclude=scaling)


def set_public(session: Session, service: Service, public: bool, now: datetime) -> str | None:
    """Make it public (a new key, returned once) or private again (the key stops working)."""
    _require_living(service)
    service.public, service.updated_at = public, now
    key = new_key() if public else None
    service.key_hash = hash_token(key) if key else None
    _note(session, service, "service.access", now,
          "public: a new service key was issued" if public else "private: the key is revoked",
          reason="ACCESS")
    return key


def request_delete(session: Session, service: Service, who: Principal, now: datetime) -> None:
    """Its replicas are stopped by the controller, which then marks it DELETED."""
    _require_living(service)
    service.deleting, service.desired_replicas, service.updated_at = True, 0, now
    set_state(session, service, ServiceState.DELETING, "DELETE_REQUESTED", now,
              f"deleted by {who.user_name}")


def _require_living(service: Service) -> None:
    if service.deleting or service.state is ServiceState.DELETED:
        raise Conflict(f"service {service.name} is deleted")


def _note(session: Session, service: Service, kind: str, now: datetime, message: str,
          reason: str = "", before: str | None = None, after: str | None = None) -> None:
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=service.id, kind=kind,
                 tenant_id=service.tenant_id, reason=reason, message=message, before=before,
                 after=after)


# --- the jobs behind it --------------------------------------------------------------------------


def start_replica(session: Session, ids: IdFactory, service: Service, port: int,
                  now: datetime) -> ServiceReplica:
    """A replica of the current generation: a job owned by the service, submitted on behalf of
    its creator, with ``PORT`` in its environment."""
    user = session.get_one(User, service.user_id)
    owner = Principal(user.id, user.name, service.tenant_id, user.tenant.name, Role(user.role),
                      is_operator=False)
    service.replicas_started += 1
    ordinal = service.replicas_started
    spec = spec_of(service)
    job = create_job(session, ids, owner, spec.job_spec(replica_job_name(service.name, ordinal),
                                                       port), now)
    job.workload, job.owner_id = Workload.SERVICE_REPLICA, service.id
    replica = ServiceReplica(
        id=ids.new("rep", now), service_id=service.id, tenant_id=service.tenant_id,
        ordinal=ordinal, generation=service.generation, state=ReplicaState.STARTING,
        message="", job_id=job.id, port=port, host=None, created_at=now)
    session.add(replica)
    _note(session, service, "service.replica", now,
          f"replica {ordinal} (v{service.generation}) started as job {job.id} on port {port}",
          after=ReplicaState.STARTING.value, reason=ReplicaState.STARTING.value)
    return replica


def job_of(session: Session, replica: ServiceReplica) -> Job:
    return session.get_one(Job, replica.job_id)
