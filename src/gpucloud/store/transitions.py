"""The only door through which a job changes state. Its event row commits with it or not at all."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from gpucloud.core.states import JobState, Reason, check_transition
from gpucloud.store.models import Allocation, DeviceClaim, Event, Job


def record_event(
    session: Session,
    *,
    at: datetime,
    object_kind: str,
    object_id: str,
    kind: str,
    tenant_id: str | None,
    reason: str = "",
    message: str = "",
    before: str | None = None,
    after: str | None = None,
) -> None:
    session.add(
        Event(
            at=at,
            tenant_id=tenant_id,
            object_kind=object_kind,
            object_id=object_id,
            kind=kind,
            before=before,
            after=after,
            reason=reason,
            message=message,
        )
    )


def transition(
    session: Session,
    job: Job,
    to: JobState,
    reason: Reason,
    now: datetime,
    message: str = "",
    exit_code: int | None = None,
) -> None:
    current = JobState(job.state)
    check_transition(job.id, current, to)
    record_event(
        session,
        at=now,
        object_kind="job",
        object_id=job.id,
        kind="job.state",
        tenant_id=job.tenant_id,
        before=current.value,
        after=to.value,
        reason=reason.value,
        message=message,
    )
    job.state, job.reason, job.message, job.updated_at = to, reason.value, message, now
    if to is JobState.RUNNING:
        job.started_at = now
    if exit_code is not None:
        job.exit_code = exit_code
    if to.terminal:
        job.ended_at = now
    if current.holds_allocation and not to.holds_allocation:
        # Allocations exist only from placement on (SCHEDULED and later); the scheduler frees
        # any that a crash left behind on a job outside those states.
        release_allocations(session, job.id, now)


def release_allocations(session: Session, job_id: str, now: datetime) -> None:
    """Free every device and core a job holds. Idempotent."""
    active = select(Allocation.id).where(Allocation.job_id == job_id, Allocation.active)
    # Claims are never read back in the same transaction: no need to sync the session (which
    # would cost a SELECT). Allocations are, and their criteria evaluate in Python cheaply.
    session.execute(
        delete(DeviceClaim).where(DeviceClaim.allocation_id.in_(active)),
        execution_options={"synchronize_session": False},
    )
    session.execute(
        update(Allocation)
        .where(Allocation.job_id == job_id, Allocation.active.is_(True))
        .values(active=False, released_at=now),
        execution_options={"synchronize_session": "evaluate"},
    )
