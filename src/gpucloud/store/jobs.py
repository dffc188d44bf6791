"""Job commands and queries on behalf of a caller; every query is scoped to what it may see."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from gpucloud.core.errors import NotFound
from gpucloud.core.ids import IdFactory
from gpucloud.core.jobspec import JobSpec
from gpucloud.core.lifecycle import StopReason, final_reason
from gpucloud.core.states import HOLDS_ALLOCATION, JobState, Reason
from gpucloud.core.tenancy import Principal
from gpucloud.store.attachments import check_attachments
from gpucloud.store.models import Allocation, Event, Job
from gpucloud.store.paging import Page, paginate
from gpucloud.store.transitions import record_event, transition


def create_job(
    session: Session, ids: IdFactory, who: Principal, spec: JobSpec, now: datetime
) -> Job:
    # Volumes and datasets: the tenant's (a full volume is refused earlier, at admission).
    spec = check_attachments(session, who.tenant_id, spec, lock=True, refuse_full=False)
    job = Job(
        id=ids.new("job", now),
        tenant_id=who.tenant_id,
        user_id=who.user_id,
        name=spec.name,
        state=JobState.PENDING,
        reason=Reason.SUBMITTED.value,
        message="",
        spec=spec.model_dump(mode="json"),
        nodes=spec.nodes,
        gpus=spec.gpus,
        gpu_type=spec.gpu_type,
        cpu_milli=spec.cpu_milli,
        memory_mib=spec.memory_mib,
        priority=spec.priority,
        tier=spec.tier.value,
        max_duration_s=spec.max_duration_s,
        exit_code=None,
        restart_count=0,
        stop_request=None,
        stop_requested_at=None,
        created_at=now,
        updated_at=now,
        started_at=None,
        ended_at=None,
    )
    session.add(job)
    record_event(
        session,
        at=now,
        object_kind="job",
        object_id=job.id,
        kind="job.state",
        tenant_id=who.tenant_id,
        after=JobState.PENDING.value,
        reason=Reason.SUBMITTED.value,
        message=f"submitted by {who.user_name}",
    )
    session.flush()
    return job


def _visible(who: Principal) -> Select[Any]:
    query = select(Job)
    return query if who.is_operator else query.where(Job.tenant_id == who.tenant_id)


def get_job(session: Session, who: Principal, job_id: str) -> Job:
    """The job, if the caller may see it. Another tenant's job is indistinguishable from none."""
    job: Job | None = session.scalar(_visible(who).where(Job.id == job_id))
    if job is None:
        raise NotFound("job", job_id)
    return job


def list_jobs(
    session: Session,
    who: Principal,
    states: Sequence[JobState] | None,
    limit: int,
    cursor: str | None,
) -> Page[Job]:
    query = _visible(who)
    if states:
        query = query.where(Job.state.in_([s.value for s in states]))
    return paginate(session, query, Job.id, limit, cursor)


def active_allocations(session: Session, job_id: str) -> list[Allocation]:
    """What the job holds now, one allocation per node, in rank order."""
    return list(
        session.scalars(
            select(Allocation)
            .where(Allocation.job_id == job_id, Allocation.active)
            .order_by(Allocation.replica)
        )
    )


def active_allocations_of(
    session: Session, job_ids: Sequence[str]
) -> dict[str, list[Allocation]]:
    if not job_ids:
        return {}
    found: dict[str, list[Allocation]] = {}
    for allocation in session.scalars(
        select(Allocation)
        .where(Allocation.job_id.in_(job_ids), Allocation.active)
        .order_by(Allocation.job_id, Allocation.replica)
    ):
        found.setdefault(allocation.job_id, []).append(allocation)
    return found


def latest_allocation(session: Session, job_id: str) -> Allocation | None:
    """Rank 0 of the job's latest attempt (whose output ``logs`` shows)."""
    return session.scalar(
        select(Allocation)
        .where(Allocation.job_id == job_id)
        .order_by(Allocation.created_at.desc(), Allocation.replica, Allocation.id.desc())
        .limit(1)
    )


def cancel_job(session: Session, job: Job, who: Principal, now: datetime) -> None:
    """Not yet placed: cancelled at once. Placed or launched: the launcher owns the race with
    the engine, so we record the request and it stops the job (SIGTERM, then SIGKILL).

    Cancelling a finished job is a no-op, so a retried cancel is harmless.
    """
    if JobState(job.state).terminal:
        return
    message = f"cancelled by {who.user_name}"
    if JobState(job.state) in (JobState.PENDING, JobState.QUEUED):
        transition(session, job, JobState.CANCELLED, Reason.CANCELLED_BY_USER, now, message)
        return
    request_stop(session, job, StopReason.CANCELLED, now, message)


def request_stop(
    session: Session, job: Job, reason: StopReason, now: datetime, message: str
) -> bool:
    """Ask the launcher to stop a placed or running job. The first request wins; True if new."""
    if JobState(job.state).terminal or job.stop_request is not None:
        return False
    assert JobState(job.state) in HOLDS_ALLOCATION
    job.stop_request, job.stop_requested_at, job.updated_at = reason.value, now, now
    record_event(
        session,
        at=now,
        object_kind="job",
        object_id=job.id,
        kind="job.stop_requested",
        tenant_id=job.tenant_id,
        reason=final_reason(reason).value,
        message=message,
    )
    return True


def job_events(session: Session, job_id: str, limit: int, cursor: str | None) -> Page[Event]:
    query = select(Event).where(Event.object_kind == "job", Event.object_id == job_id)
    return paginate(session, query, Event.id, limit, cursor, newest_first=False)


def visible_events(
    session: Session, who: Principal, limit: int, cursor: str | None, object_id: str | None = None
) -> Page[Event]:
    query = select(Event)
    if not who.is_operator:
        query = query.where(Event.tenant_id == who.tenant_id)
    if object_id:
        query = query.where(Event.object_id == object_id)
    return paginate(session, query, Event.id, limit, cursor)
