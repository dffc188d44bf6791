"""SCHEDULED -> STARTING -> RUNNING -> terminal: hands placed jobs to the engine and watches them.

Crash safety: ``launch_attempted_at`` is written before the engine is called, and the engine's
launch is idempotent on the allocation id, so a restart at any line neither loses a job nor runs
it twice. Engine calls happen outside database transactions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from gpucloud.controllers.context import Context
from gpucloud.core.clock import as_utc
from gpucloud.core.errors import EngineError
from gpucloud.core.faults import exit_hint
from gpucloud.core.launch_env import Rendezvous, job_environment, rendezvous_port
from gpucloud.core.lifecycle import Decision, Observed, StopReason, decide, finish_unlaunched
from gpucloud.core.states import JobState, Reason
from gpucloud.engines.base import EngineRef, LaunchSpec, ReplicaSpec, RunStatus
from gpucloud.store.health import record_exit_hint
from gpucloud.store.jobs import active_allocations
from gpucloud.store.models import Allocation, Device, Job, Node
from gpucloud.store.restarts import credit_fault, requeue_after_fault
from gpucloud.store.transitions import transition

log = logging.getLogger("gpucloud.launcher")
HINT_TAIL_BYTES = 8192  # how much of a failed job's output is searched for GPU errors


@dataclass(frozen=True)
class _Launched:
    job_id: str
    allocation_ids: tuple[str, ...]  # every replica of the launch, rank order
    ref: EngineRef


class LauncherController:
    name = "launcher"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile_once(self) -> None:
        for job_id in self._scheduled_job_ids():
            try:
                self._launch(job_id)
            except StaleDataError:
                log.info("job %s changed while launching; retrying next pass", job_id)
        self._observe()

    # --- launching ---------------------------------------------------------------------------

    def _scheduled_job_ids(self) -> list[str]:
        with self.ctx.db.read() as session:
            return list(
                session.scalars(
                    select(Job.id).where(Job.state == JobState.SCHEDULED).order_by(Job.id)
                )
            )

    def _launch(self, job_id: str) -> None:
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            job = session.get(Job, job_id)
            allocations = active_allocations(session, job_id)
            if job is None or job.state != JobState.SCHEDULED or not allocations:
                return
            attempted = any(a.launch_attempted_at is not None for a in allocations)
            if job.stop_request is not None and not attempted:
                finish = finish_unlaunched(StopReason(job.stop_request))
                transition(session, job, finish.state, finish.reason, now, finish.message)
                return
            for allocation in allocations:
                allocation.launch_attempted_at = allocation.launch_attempted_at or now
            spec = self._launch_spec(session, job, allocations)
        try:
            ref = self.ctx.engine.launch(spec)
        except EngineError as err:
            with self.ctx.db.write() as session:
                job = session.get(Job, job_id)
                if job is not None and job.state == JobState.SCHEDULED:
                    transition(
                        session,
                        job,
                        JobState.FAILED,
                        Reason.LAUNCH_FAILED,
                        self.ctx.clock.now(),
                        str(err),
                    )
            return
        with self.ctx.db.write() as session:
            job = session.get(Job, job_id)
            allocations = active_allocations(session, job_id)
            ids = {a.id for a in allocations}
            if job is None or job.state != JobState.SCHEDULED or ids != _ids(spec):
                return
            for allocation in allocations:
                allocation.engine_ref = ref
            transition(
                session,
                job,
                JobState.STARTING,
                Reason.LAUNCHED,
                self.ctx.clock.now(),
                f"launched on {', '.join(a.node_id for a in allocations)}",
            )

    def _launch_spec(self, session: Session, job: Job, allocations: list[Allocation]) -> LaunchSpec:
        master = session.get_one(Node, allocations[0].node_id)
        checkpoint_dir = self.ctx.engine.checkpoint_dir(job.id)
        port = rendezvous_port(allocations[0].id)
        replicas = []
        for rank, allocation in enumerate(allocations):
            devices = [session.get_one(Device, d) for d in allocation.device_ids]
            indexes = [d.index for d in devices]
            env = job_environment(
                user_env=job.spec.get("env", {}),
                job_id=job.id,
                job_name=job.name,
                allocation_id=allocation.id,
                node_id=allocation.node_id,
                checkpoint_dir=checkpoint_dir,
                restart_count=job.restart_count,
                gpu_model=devices[0].model if devices else None,
                device_indexes=indexes,
                simulated=any(d.simulated for d in devices),
                rendezvous=Rendezvous(rank, len(allocations), master.address, port),
            )
            replicas.append(ReplicaSpec(
                allocation_id=allocation.id,
                node_id=allocation.node_id,
                rank=rank,
                device_indexes=indexes,
                env=env,
                cpu_milli=allocation.cpu_milli,
                memory_mib=allocation.memory_mib,
            ))
        return LaunchSpec(
            job_id=job.id,
            command=list(job.spec["command"]),
            replicas=replicas,
            time_limit_s=job.max_duration_s,
        )

    # --- watching ----------------------------------------------------------------------------

    def _observe(self) -> None:
        with self.ctx.db.read() as session:
            grouped: dict[tuple[str, str], list[str]] = {}
            for job_id, allocation_id, ref in session.execute(
                select(Job.id, Allocation.id, Allocation.engine_ref)
                .join(Allocation, Allocation.job_id == Job.id)
                .where(
                    Job.state.in_([JobState.STARTING, JobState.RUNNING]),
                    Allocation.active,
                    Allocation.engine_ref.is_not(None),
                )
                .order_by(Job.id, Allocation.replica)
            ):
                if ref is not None:
                    grouped.setdefault((job_id, ref), []).append(allocation_id)
        launched = [_Launched(job, tuple(ids), ref) for (job, ref), ids in grouped.items()]
        if not launched:
            return
        statuses = self.ctx.engine.status([item.ref for item in launched])
        for item in launched:
            try:
                self._reconcile_run(item, statuses[item.ref])
            except StaleDataError:
                log.info("job %s changed while observing; retrying next pass", item.job_id)

    def _reconcile_run(self, item: _Launched, run: RunStatus) -> None:
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            job = session.get(Job, item.job_id)
            allocations = [session.get(Allocation, a) for a in item.allocation_ids]
            if job is None or any(a is None or not a.active for a in allocations):
                return
            held = [a for a in allocations if a is not None]
            decision = decide(
                _observed(job, held[0], run),
                now,
                self.ctx.tunables.stop_grace_s,
                self.ctx.tunables.funds_stop_grace_s,
            )
            self._apply(session, job, held, decision, run)
        # Signals go out after the commit: the intent is durable before the act.
        if decision.request_stop is not None:
            self.ctx.engine.stop(item.ref)
        if decision.force_stop:
            self.ctx.engine.stop(item.ref, force=True)
        finish = decision.finish
        if finish is not None and finish.reason is Reason.EXIT_NONZERO and not decision.restart:
            self._hint(item, held[0].node_id)

    def _hint(self, item: _Launched, node_id: str) -> None:
        """A failed job whose last output mentions a CUDA or NCCL error leaves a hint for
        operators (many such hints on one node point at the node). Best effort."""
        tail = b""
        try:
            for chunk in self.ctx.engine.logs(item.ref):
                tail = (tail + chunk)[-HINT_TAIL_BYTES:]
        except EngineError:
            return
        hint = exit_hint(tail.decode(errors="replace"))
        if hint is None:
            return
        with self.ctx.db.write() as session:
            job = session.get(Job, item.job_id)
            if job is not None:
                record_exit_hint(session, self.ctx.engine.name, job, node_id, hint,
                                 self.ctx.clock.now())

    def _apply(
        self,
        session: Session,
        job: Job,
        allocations: list[Allocation],
        decision: Decision,
        run: RunStatus,
    ) -> None:
        """The stop bookkeeping lives on rank 0's allocation: one launch, one stop."""
        now = self.ctx.clock.now()
        first = allocations[0]
        if decision.mark_running:
            for allocation in allocations:
                allocation.started_at = now
            transition(
                session,
                job,
                JobState.RUNNING,
                Reason.STARTED,
                now,
                f"running on {', '.join(a.node_id for a in allocations)}",
            )
            credit_fault(session, job, now)  # back after a fault: the lost time is on us
        if decision.request_stop is not None:
            first.stop_requested_at, first.stop_reason = now, decision.request_stop
        if decision.force_stop:
            first.stop_forced = True
        if decision.finish is not None and decision.restart:
            finish = decision.finish
            give_up = (finish.state, finish.reason, finish.message, finish.exit_code)
            requeue_after_fault(session, job, first, _ended_at(run, first, now), give_up, now)
        elif decision.finish is not None:
            finish = decision.finish
            transition(
                session,
                job,
                finish.state,
                finish.reason,
                _ended_at(run, first, now),
                finish.message,
                exit_code=finish.exit_code,
            )


def _ended_at(run: RunStatus, allocation: Allocation, now: datetime) -> datetime:
    """When the engine saw the run end (it may have ended while the control plane was down),
    kept between the start we recorded and now, so that clocks that disagree cannot reorder."""
    if run.finished_at is None or allocation.started_at is None:
        return now
    return max(allocation.started_at, min(now, run.finished_at))


def _ids(spec: LaunchSpec) -> set[str]:
    return {r.allocation_id for r in spec.replicas}


def _observed(job: Job, allocation: Allocation, run: RunStatus) -> Observed:
    return Observed(
        state=JobState(job.state),
        run=run,
        stop_request=StopReason(job.stop_request) if job.stop_request else None,
        started_at=as_utc(job.started_at) if job.started_at else None,
        max_duration_s=job.max_duration_s,
        stop_requested_at=(
            as_utc(allocation.stop_requested_at) if allocation.stop_requested_at else None
        ),
        stop_reason=StopReason(allocation.stop_reason) if allocation.stop_reason else None,
        stop_forced=allocation.stop_forced,
    )
