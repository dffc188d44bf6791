"""Restarting faulted jobs in the database: requeue with back-off, and the credit for the time
the fault cost the tenant (posted once, in the transaction that sees the job running again)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from gpucloud.billing.money import Money
from gpucloud.billing.pricing import SCALE, units_per_second, version_at
from gpucloud.core.restarts import RestartPolicy, decide_restart, lost_run_seconds
from gpucloud.core.states import JobState, Reason
from gpucloud.store.billing import credit as post_credit
from gpucloud.store.billing import footprint_of, priced_footprint
from gpucloud.store.models import Allocation, Job, Tenant
from gpucloud.store.prices import load_versions
from gpucloud.store.settings import get_setting
from gpucloud.store.transitions import record_event, transition


def restart_policy(session: Session) -> RestartPolicy:
    return RestartPolicy(
        budget=int(get_setting(session, "health.restart_budget")),
        backoff_base_s=float(get_setting(session, "health.restart_backoff_seconds")),
        backoff_max_s=float(get_setting(session, "health.restart_backoff_max_seconds")),
    )


def requeue_after_fault(
    session: Session,
    job: Job,
    rank0: Allocation,
    ended_at: datetime,
    give_up: tuple[JobState, Reason, str, int | None],
    now: datetime,
) -> bool:
    """Send a job whose run a platform fault ended back to the queue, with the same checkpoint
    directory and ``restart_count`` + 1, after its back-off; or, when its restart budget is
    spent, end it as ``give_up`` says. Returns True if it was requeued."""
    decision = decide_restart(job.restarts_since_progress, restart_policy(session))
    if not decision.restart:
        state, _, message, code = give_up
        transition(session, job, state, Reason.RESTART_BUDGET_EXHAUSTED, ended_at,
                   f"{message}; {decision.message}", exit_code=code)
        return False
    fault_at = job.fault_at or ended_at
    job.fault_lost_s = lost_run_seconds(fault_at, rank0.started_at, job.last_checkpoint_at)
    job.fault_at = fault_at
    job.restart_count += 1
    job.restarts_since_progress += 1
    job.not_before = now + timedelta(seconds=decision.delay_s)
    job.stop_request, job.stop_requested_at = None, None
    step = job.last_checkpoint_step
    resume = f"from its checkpoint at step {step}" if step is not None else "from the start"
    transition(session, job, JobState.QUEUED, Reason.RESTARTING, now,
               f"restart {job.restart_count} after a platform fault, {resume}; "
               f"{decision.message}")
    return True


def credit_fault(session: Session, job: Job, now: datetime) -> Money | None:
    """When a requeued job runs again: credit the run time the fault threw away plus the time
    it took to get back, at the job's price. Keyed by the restart, so it is posted once."""
    if job.fault_at is None:
        return None
    seconds = job.fault_lost_s + max(0, int((now - job.fault_at).total_seconds()))
    fault_at, job.fault_at, job.fault_lost_s = job.fault_at, None, 0
    tenant = session.get(Tenant, job.tenant_id)
    versions = load_versions(session)
    if tenant is None or tenant.is_operator or not versions or seconds <= 0:
        return None
    version = version_at(versions, fault_at)
    fp = priced_footprint(session, version, footprint_of(job))
    amount = Money(units_per_second(version, fp) * seconds // SCALE, version.currency)
    if amount.minor <= 0:
        return None
    step = job.last_checkpoint_step
    reason = (f"platform fault at {fault_at.isoformat(timespec='seconds')}: {seconds} s lost "
              f"(run since the last checkpoint{f' at step {step}' if step is not None else ''} "
              "and the restart)")
    if post_credit(session, job.tenant_id, amount, reason, f"fault:{job.id}:{job.restart_count}",
                   now, job_id=job.id):
        record_event(session, at=now, object_kind="job", object_id=job.id, kind="job.credit",
                     tenant_id=job.tenant_id, reason=Reason.RESTARTING.value,
                     message=f"credited {amount} for {seconds} s lost to a platform fault")
    return amount
