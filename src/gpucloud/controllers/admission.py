"""PENDING -> QUEUED once the job fits its tenant's quotas and budgets and the wallet can pay
for its runway. A job that cannot go yet stays PENDING with the reason shown."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gpucloud.billing.funds import Holdings
from gpucloud.controllers.context import Context
from gpucloud.core.states import JobState, Reason
from gpucloud.store.billing import affordability, footprint_of, holdings
from gpucloud.store.limit_gate import LimitGate
from gpucloud.store.models import Job
from gpucloud.store.transitions import transition


class AdmissionController:
    name = "admission"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile_once(self) -> None:
        with self.ctx.db.read() as session:
            pending = list(session.scalars(select(Job.id).where(Job.state == JobState.PENDING)))
        if not pending:
            return  # the common case costs a read, not the write lock
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session, session.no_autoflush:
            # No autoflush: the reads below (limits, usage, wallets) never depend on the state
            # changes this pass makes, and flushing before each one held the write lock for
            # tens of milliseconds per pass. The gate itself tracks what this pass admitted.
            gate = LimitGate(session, now)
            priced = (gate.version, gate.runway_s)
            held: dict[str, Holdings] = {}  # admitting charges nothing: read once per tenant
            for job in session.scalars(
                select(Job)
                .where(Job.id.in_(pending), Job.state == JobState.PENDING)
                .order_by(Job.id)  # ids are time-ordered: first come, first admitted
            ):
                fp = footprint_of(job)
                blocked = gate.blocking(job.tenant_id, fp, job.max_duration_s)
                if blocked is not None:
                    _wait(session, job, blocked.reason, blocked.message, now)
                    continue
                if job.tenant_id not in held:
                    held[job.tenant_id] = holdings(session, job.tenant_id)
                funds = affordability(session, job.tenant_id, fp, job.max_duration_s, now,
                                      priced, held[job.tenant_id])
                if funds is not None and not funds.covered:
                    # Waits rather than fails: a top-up lets it through on the next pass.
                    _wait(session, job, Reason.WAITING_FOR_FUNDS, funds.explain(), now)
                    continue
                transition(
                    session, job, JobState.QUEUED, Reason.ADMITTED, now, "waiting for a placement"
                )
                gate.admitted(job.tenant_id, fp)


def _wait(session: Session, job: Job, reason: Reason, message: str, now: datetime) -> None:
    """Show why the job waits, without bumping its version: it is not a state change."""
    if job.reason == reason.value and job.message == message:
        return
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == JobState.PENDING)
        .values(reason=reason.value, message=message, updated_at=now)
        .execution_options(synchronize_session=False)
    )
