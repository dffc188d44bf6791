"""QUEUED -> SCHEDULED: snapshot the fleet and queue, call the pure ``place``, write the plan.

The snapshot is read without the write lock and the plan is written only when it changes
something, so an idle or blocked queue costs one read per pass. Only the head of the queue
(``Tunables.queue_window`` jobs) is considered per pass: with strict FIFO nothing behind a
blocked job can be placed anyway, so a pass costs the same with 100 or 100,000 jobs queued.
Writing checks that each job is still QUEUED; the device-claim primary key makes a double
booking impossible even so.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gpucloud.controllers.context import Context
from gpucloud.core.placement import Pending, Placement, place
from gpucloud.core.states import HOLDS_ALLOCATION, JobState, Reason
from gpucloud.store.inventory import cluster_snapshot, queued_jobs
from gpucloud.store.models import Allocation, DeviceClaim, Job
from gpucloud.store.transitions import release_allocations, transition


class SchedulerController:
    name = "scheduler"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile_once(self) -> None:
        with self.ctx.db.read() as session:
            orphans = self._orphaned_jobs(session)
            queue = queued_jobs(session, self.ctx.tunables.queue_window)
            snapshot = cluster_snapshot(session) if queue else None
        if orphans:
            with self.ctx.db.write() as session:
                for job_id in orphans:
                    release_allocations(session, job_id, self.ctx.clock.now())
        if snapshot is None:
            return
        plan = place(snapshot, [q.workload for q in queue])
        written = {q.workload.id: (q.reason, q.message) for q in queue}
        changed = [p for p in plan.pending if written[p.workload_id] != (p.reason.value, p.message)]
        if plan.placements or changed:
            with self.ctx.db.write() as session:
                for placement in plan.placements:
                    self._bind(session, placement)
                self._explain(session, changed)

    def _bind(self, session: Session, placement: Placement) -> None:
        now = self.ctx.clock.now()
        job = session.get(Job, placement.workload_id)
        if job is None or job.state != JobState.QUEUED:
            return  # cancelled since the snapshot
        allocation = Allocation(
            id=self.ctx.ids.new("alc", now),
            job_id=job.id,
            node_id=placement.node_id,
            replica=0,
            cpu_milli=placement.cpu_milli,
            memory_mib=placement.memory_mib,
            device_ids=list(placement.device_ids),
            active=True,
            created_at=now,
        )
        session.add(allocation)
        session.flush()
        session.add_all(
            DeviceClaim(device_id=d, allocation_id=allocation.id) for d in placement.device_ids
        )
        where = placement.node_id + (
            f" ({', '.join(placement.device_ids)})" if placement.device_ids else ""
        )
        transition(session, job, JobState.SCHEDULED, Reason.PLACED, now, f"placed on {where}")

    def _explain(self, session: Session, pending: list[Pending]) -> None:
        """Why each job waits: informational, so a plain UPDATE guarded by the state suffices."""
        now = self.ctx.clock.now()
        for item in pending:
            session.execute(
                update(Job)
                .where(Job.id == item.workload_id, Job.state == JobState.QUEUED)
                .values(reason=item.reason.value, message=item.message, updated_at=now)
                .execution_options(synchronize_session=False)
            )

    def _orphaned_jobs(self, session: Session) -> set[str]:
        """Defence in depth: an active allocation of a job that no longer holds one is freed."""
        held = [s.value for s in HOLDS_ALLOCATION]
        return set(
            session.scalars(
                select(Allocation.job_id)
                .join(Job, Job.id == Allocation.job_id)
                .where(Allocation.active, Job.state.not_in(held))
            )
        )
