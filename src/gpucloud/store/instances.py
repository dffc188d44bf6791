"""Instance commands and queries on behalf of a caller; ``set_state`` is the only door through
which an instance changes state (its event and its storage lease commit with it)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from gpucloud.billing.leases import LeaseKind
from gpucloud.core.clock import as_utc
from gpucloud.core.errors import Conflict, NotFound
from gpucloud.core.ids import IdFactory
from gpucloud.core.instances import (
    Desired,
    IdlePolicy,
    InstanceReason,
    InstanceSpec,
    InstanceState,
    check_instance_transition,
    saved_minor,
)
from gpucloud.core.jobspec import JobSpec
from gpucloud.core.states import Workload
from gpucloud.core.tenancy import Principal, Role
from gpucloud.store.jobs import create_job
from gpucloud.store.leases import end_leases, open_lease, open_lease_of
from gpucloud.store.models import Event, Job, User
from gpucloud.store.models_instances import Instance, InstanceIdlePolicy
from gpucloud.store.paging import Page, paginate
from gpucloud.store.transitions import record_event

OBJECT_KIND = "instance"


def create_instance(
    session: Session, ids: IdFactory, who: Principal, spec: InstanceSpec, now: datetime
) -> Instance:
    instance_id = ids.new("ins", now)
    name = spec.name or f"inst-{instance_id[-6:]}"
    _check_name_free(session, who.tenant_id, name)
    instance = Instance(
        id=instance_id,
        tenant_id=who.tenant_id,
        user_id=who.user_id,
        name=name,
        live_name=name,
        state=InstanceState.PENDING,
        desired=Desired.RUNNING,
        reason=InstanceReason.CREATED.value,
        message="",
        spec=spec.model_copy(update={"name": name}).model_dump(mode="json"),
        gpus=spec.gpus,
        gpu_type=spec.gpu_type,
        disk_gib=spec.disk_gib,
        no_gpu=False,
        jupyter_token=secrets.token_urlsafe(32) if spec.jupyter else None,
        current_job_id=None,
        runs=0,
        reclaim_rate_minor=0,
        saved_minor=0,
        saved_seconds=0,
        created_at=now,
        updated_at=now,
    )
    session.add(instance)
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=instance_id,
                 kind="instance.state", tenant_id=who.tenant_id,
                 after=InstanceState.PENDING.value, reason=InstanceReason.CREATED.value,
                 message=f"created by {who.user_name}")
    session.flush()
    return instance


def _check_name_free(session: Session, tenant_id: str, name: str) -> None:
    taken = session.scalar(
        select(Instance.id).where(Instance.tenant_id == tenant_id, Instance.live_name == name)
    )
    if taken is not None:
        raise Conflict(f"an instance named {name!r} already exists ({taken}); choose another "
                       "name or delete that one")


def spec_of(instance: Instance) -> InstanceSpec:
    return InstanceSpec.model_validate(instance.spec)


def _visible(who: Principal) -> Select[Any]:
    query = select(Instance)
    return query if who.is_operator else query.where(Instance.tenant_id == who.tenant_id)


def get_instance(session: Session, who: Principal, ref: str) -> Instance:
    """By id, or by name among the caller's living instances. Another tenant's is a 404."""
    found: Instance | None = session.scalar(
        _visible(who).where(
            or_(Instance.id == ref,
                (Instance.live_name == ref) & (Instance.tenant_id == who.tenant_id))
        )
    )
    if found is None:
        raise NotFound("instance", ref)
    return found


def list_instances(session: Session, who: Principal, limit: int, cursor: str | None,
                   include_deleted: bool = False) -> Page[Instance]:
    query = _visible(who)
    if not include_deleted:
        query = query.where(Instance.state != InstanceState.DELETED)
    return paginate(session, query, Instance.id, limit, cursor)


def latest_events(session: Session, instance_id: str, limit: int) -> list[Event]:
    """Its newest ``limit`` events, oldest first."""
    rows = session.scalars(
        select(Event).where(Event.object_kind == OBJECT_KIND, Event.object_id == instance_id)
        .order_by(Event.id.desc()).limit(limit)
    )
    return list(reversed(list(rows)))


def current_job(session: Session, instance: Instance) -> Job | None:
    return session.get(Job, instance.current_job_id) if instance.current_job_id else None


# --- the door -----------------------------------------------------------------------------------


def set_state(session: Session, instance: Instance, to: InstanceState, reason: InstanceReason,
              now: datetime, message: str = "") -> None:
    """Change state with its event; a STOPPED instance's disk is billed as storage, so the lease
    opens on entering STOPPED and ends on leaving it, in this same transaction."""
    current = InstanceState(instance.state)
    check_instance_transition(instance.id, current, to)
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=instance.id,
                 kind="instance.state", tenant_id=instance.tenant_id, before=current.value,
                 after=to.value, reason=reason.value, message=message)
    instance.state, instance.reason, instance.message = to, reason.value, message
    instance.updated_at = now
    if to is InstanceState.RUNNING:
        instance.started_at = now
    if to in (InstanceState.STOPPED, InstanceState.FAILED, InstanceState.DELETED):
        instance.stopped_at = now
        instance.current_job_id = None
        instance.low_since = instance.idle_warned_at = None
    if to is InstanceState.DELETED:
        instance.deleted_at, instance.live_name = now, None
    if current is InstanceState.STOPPED or current is InstanceState.FAILED:
        end_leases(session, instance.id, now)
    if to in (InstanceState.STOPPED, InstanceState.FAILED) and open_lease_of(
            session, instance.id) is None:
        open_lease(session, lease_id=_lease_id(now), tenant_id=instance.tenant_id,
                   kind=LeaseKind.STORAGE, ref_id=instance.id, item="instance-disk",
                   quantity=instance.disk_gib, at=now)


_LEASE_IDS = IdFactory()


def _lease_id(now: datetime) -> str:
    return _LEASE_IDS.new("lse", now)


# --- what users ask ---------------------------------------------------------------------------


def request_stop(session: Session, instance: Instance, who: Principal, now: datetime) -> None:
    """Idempotent: stopping a stopped instance changes nothing."""
    _require_living(instance)
    if instance.desired is Desired.STOPPED:
        return
    if InstanceState(instance.state) in (InstanceState.STOPPED, InstanceState.FAILED):
        return
    close_saving(instance, now)
    instance.desired, instance.updated_at = Desired.STOPPED, now
    _note(session, instance, "instance.stop_requested", InstanceReason.STOP_REQUESTED, now,
          f"stop requested by {who.user_name}")


def request_start(session: Session, instance: Instance, who: Principal, no_gpu: bool,
                  now: datetime) -> None:
    _require_living(instance)
    state = InstanceState(instance.state)
    if state not in (InstanceState.STOPPED, InstanceState.FAILED):
        if instance.desired is Desired.RUNNING:
            raise Conflict(f"instance {instance.name} is already {state.value.lower()}; stop "
                           "it first to start it in another mode")
        raise Conflict(f"instance {instance.name} is {state.value.lower()}; start it again "
                       "once it is STOPPED")
    if not no_gpu:
        close_saving(instance, now)
    instance.desired, instance.no_gpu = Desired.RUNNING, no_gpu or instance.gpus == 0
    mode = " without GPUs (CPU price)" if no_gpu and instance.gpus else ""
    set_state(session, instance, InstanceState.PENDING, InstanceReason.START_REQUESTED, now,
              f"started by {who.user_name}{mode}")


def request_delete(session: Session, instance: Instance, who: Principal, now: datetime) -> None:
    """A stopped instance is deleted at once; a running one is stopped first (the controller
    finishes the delete when its job has ended). Its disk is removed afterwards."""
    _require_living(instance)
    close_saving(instance, now)
    instance.desired, instance.updated_at = Desired.DELETED, now
    message = f"deleted by {who.user_name}"
    if InstanceState(instance.state) in (InstanceState.STOPPED, InstanceState.FAILED):
        set_state(session, instance, InstanceState.DELETED, InstanceReason.DELETED_BY_USER, now,
                  message)
    else:
        _note(session, instance, "instance.delete_requested", InstanceReason.DELETE_REQUESTED,
              now, message)


def report_utilization(session: Session, instance: Instance, pct: int, now: datetime) -> None:
    instance.utilization_pct, instance.utilization_at = pct, now


def _require_living(instance: Instance) -> None:
    if instance.state is InstanceState.DELETED or instance.desired is Desired.DELETED:
        raise Conflict(f"instance {instance.name} is deleted")


def _note(session: Session, instance: Instance, kind: str, reason: InstanceReason,
          now: datetime, message: str) -> None:
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=instance.id, kind=kind,
                 tenant_id=instance.tenant_id, reason=reason.value, message=message)


# --- idle reclamation bookkeeping ------------------------------------------------------------


def open_saving(instance: Instance, rate_per_hour_minor: int, now: datetime) -> None:
    instance.reclaimed_at, instance.reclaim_rate_minor = now, max(0, rate_per_hour_minor)


def close_saving(instance: Instance, now: datetime) -> None:
    """The user acted on a reclaimed instance: from now on it is their choice, not a saving."""
    if instance.reclaimed_at is None:
        return
    seconds = max(0, int((now - as_utc(instance.reclaimed_at)).total_seconds()))
    instance.saved_minor += saved_minor(instance.reclaim_rate_minor, seconds)
    instance.saved_seconds += seconds
    instance.reclaimed_at, instance.reclaim_rate_minor = None, 0


def savings(instance: Instance, now: datetime) -> tuple[int, int]:
    """(minor units, seconds) saved by idle reclamation so far, the open window included."""
    minor, seconds = instance.saved_minor, instance.saved_seconds
    if instance.reclaimed_at is not None:
        open_s = max(0, int((now - as_utc(instance.reclaimed_at)).total_seconds()))
        minor += saved_minor(instance.reclaim_rate_minor, open_s)
        seconds += open_s
    return minor, seconds


def idle_policy(session: Session, tenant_id: str) -> IdlePolicy | None:
    row = session.get(InstanceIdlePolicy, tenant_id)
    if row is None:
        return None
    return IdlePolicy(row.below_pct, row.idle_s, row.grace_s, row.action)


def set_idle_policy(session: Session, tenant_id: str, policy: IdlePolicy, who: str,
                    now: datetime) -> None:
    row = session.get(InstanceIdlePolicy, tenant_id)
    if row is None:
        row = InstanceIdlePolicy(tenant_id=tenant_id)
        session.add(row)
    row.below_pct, row.idle_s, row.grace_s = policy.below_pct, policy.idle_s, policy.grace_s
    row.action, row.updated_by, row.updated_at = policy.action, who, now


def clear_idle_policy(session: Session, tenant_id: str) -> bool:
    row = session.get(InstanceIdlePolicy, tenant_id)
    if row is None:
        return False
    session.delete(row)
    return True


# --- the job behind it --------------------------------------------------------------------------


def start_job(session: Session, ids: IdFactory, instance: Instance, spec: JobSpec,
              now: datetime) -> Job:
    """The instance's next run, owned by it, submitted on behalf of its creator."""
    user = session.get_one(User, instance.user_id)
    owner = Principal(user.id, user.name, instance.tenant_id, user.tenant.name, Role(user.role),
                      is_operator=False)
    job = create_job(session, ids, owner, spec, now)
    job.workload, job.owner_id = Workload.INSTANCE, instance.id
    instance.current_job_id, instance.runs = job.id, instance.runs + 1
    instance.updated_at = now
    return job
