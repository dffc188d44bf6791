"""PENDING -> QUEUED once the tenant can pay for the job's runway (quota checks join here)."""

from __future__ import annotations

from sqlalchemy import select, update

from gpucloud.controllers.context import Context
from gpucloud.core.states import JobState, Reason
from gpucloud.store.billing import affordability, footprint_of
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
        with self.ctx.db.write() as session:
            for job in session.scalars(
                select(Job).where(Job.id.in_(pending), Job.state == JobState.PENDING)
            ):
                funds = affordability(
                    session, job.tenant_id, footprint_of(job), job.max_duration_s, now
                )
                if funds is not None and not funds.covered:
                    # Waits rather than fails: a top-up lets it through on the next pass.
                    session.execute(
                        update(Job)
                        .where(Job.id == job.id, Job.state == JobState.PENDING)
                        .values(
                            reason=Reason.WAITING_FOR_FUNDS.value,
                            message=funds.explain(),
                            updated_at=now,
                        )
                        .execution_options(synchronize_session=False)
                    )
                    continue
                transition(
                    session, job, JobState.QUEUED, Reason.ADMITTED, now, "waiting for a placement"
                )
