"""QUEUED -> SCHEDULED: read the fleet, running work and queue head, call the pure
``gpucloud.scheduling.schedule``, write its placements and why the rest waits.

The pass orders the queue by priority class, then by each tenant's dominant share (DRF); scores
nodes with the fragmentation-aware policy; backfills jobs that cannot delay the first blocked
job's reservation (only when running jobs have a max duration, otherwise nothing is known to
end). Preemption stays off until victims have a stop path of their own. The input is read
without the write lock and the plan is written only when it changes something, so an idle or
blocked queue costs one read per pass; only the head of the queue (``Tunables.queue_window``
jobs) is considered per pass. Writing checks that each job is still QUEUED; the device-claim
primary key makes a double booking impossible even so.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gpucloud.controllers.context import Context
from gpucloud.core.states import HOLDS_ALLOCATION, JobState, Reason
from gpucloud.scheduling.dataset_affinity import with_dataset_affinity
from gpucloud.scheduling.decisions import SchedulePlan, Waiting, WaitReason
from gpucloud.scheduling.frag import typical
from gpucloud.scheduling.model import Placement
from gpucloud.scheduling.policies import FragAwareScorer, Scorer
from gpucloud.scheduling.scheduler import SchedulerConfig, schedule
from gpucloud.store.models import Allocation, DeviceClaim, Job
from gpucloud.store.scheduling_input import (
    SchedulingInput,
    job_of,
    rank_of,
    scheduling_input,
)
from gpucloud.store.transitions import release_allocations, transition

# Gangs take the tightest domain that holds them (node, NVLink island, leaf switch, rack) but
# may span the cluster: nodes without topology labels would otherwise never share a gang.
CONFIG = SchedulerConfig(preemption=False, gang_max_level="cluster")
# A pass whose input equals the last one's is skipped, but recomputed at least this often:
# backfill reservations move with the clock even when nothing else changes.
RESYNC_S = 5.0
WAIT_REASONS = {
    WaitReason.NO_FIT: Reason.WAITING_FOR_RESOURCES,
    WaitReason.GANG_INCOMPLETE: Reason.WAITING_FOR_RESOURCES,
    WaitReason.GANG_NO_DOMAIN: Reason.WAITING_FOR_RESOURCES,
    WaitReason.OVER_QUOTA: Reason.WAITING_FOR_QUOTA,
    WaitReason.RESERVED: Reason.WAITING_IN_QUEUE,
}


class SchedulerController:
    name = "scheduler"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # (decision key, when) of the last plan written; lost on restart, which only costs a
        # recomputation. With a long blocked queue this turns most passes into one read.
        self._last: tuple[tuple[object, ...], datetime] | None = None

    def reconcile_once(self) -> None:
        now = self.ctx.clock.now()
        with self.ctx.db.read() as session:
            orphans = self._orphaned_jobs(session)
            view = scheduling_input(session, self.ctx.tunables.queue_window, now)
        if orphans:
            with self.ctx.db.write() as session:
                for job_id in orphans:
                    release_allocations(session, job_id, now)
        if view is None:
            return
        key = view.decision_key()
        last = self._last
        if last is not None and last[0] == key and (now - last[1]).total_seconds() < RESYNC_S:
            return
        plan = self._plan(view)
        written = {q.job_id: (q.reason, q.message) for q in view.queue}
        changed: dict[str, Waiting] = {}
        for w in plan.waiting:  # a gang's members wait for the same reason: one per job
            job_id = job_of(w.workload_id)
            if written.get(job_id) != (WAIT_REASONS[w.reason].value, w.message):
                changed.setdefault(job_id, w)
        placed: dict[str, list[Placement]] = {}
        for p in plan.placements:
            placed.setdefault(job_of(p.workload_id), []).append(p)
        if placed or changed:
            with self.ctx.db.write() as session:
                for job_id, placements in placed.items():
                    self._bind(session, job_id, placements, view)
                self._explain(session, changed)
        self._last = (key, now)

    def _plan(self, view: SchedulingInput) -> SchedulePlan:
        # The request distribution FGD-style scoring needs: what is queued and running now.
        queue = [w for q in view.queue for w in q.members]
        shapes = [w.shape for w in queue] + [r.workload.shape for r in view.running]
        scorer: Scorer = FragAwareScorer(typical(shapes))
        # Prefer nodes whose dataset cache holds what a job reads (a plugin on the scorer).
        queue, scorer = with_dataset_affinity(queue, scorer, view.wanted_datasets,
                                              view.cached_datasets)
        return schedule(view.snapshot, queue, scorer, CONFIG, view.running)

    def _bind(
        self, session: Session, job_id: str, placements: list[Placement], view: SchedulingInput
    ) -> None:
        """All of a job's nodes in one transaction: a gang is never partly placed."""
        now = self.ctx.clock.now()
        job = session.get(Job, job_id)
        if job is None or job.state != JobState.QUEUED or len(placements) != job.nodes:
            return  # cancelled since the snapshot (the core never places part of a gang)
        where = []
        for rank, placement in enumerate(sorted(placements, key=lambda p: rank_of(p.workload_id))):
            device_ids = [view.device_ids[(placement.node, i)] for i in placement.devices]
            allocation = Allocation(
                id=self.ctx.ids.new("alc", now),
                job_id=job.id,
                node_id=placement.node,
                replica=rank,
                cpu_milli=placement.cpu_milli,
                memory_mib=placement.memory_mib,
                device_ids=device_ids,
                active=True,
                created_at=now,
            )
            session.add(allocation)
            session.flush()
            session.add_all(
                DeviceClaim(device_id=d, allocation_id=allocation.id) for d in device_ids
            )
            where.append(placement.node + (f" ({', '.join(device_ids)})" if device_ids else ""))
        transition(
            session, job, JobState.SCHEDULED, Reason.PLACED, now, f"placed on {'; '.join(where)}"
        )

    def _explain(self, session: Session, pending: dict[str, Waiting]) -> None:
        """Why each job waits: informational, so a plain UPDATE guarded by the state suffices."""
        now = self.ctx.clock.now()
        for job_id, item in pending.items():
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.QUEUED)
                .values(
                    reason=WAIT_REASONS[item.reason].value, message=item.message, updated_at=now
                )
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
