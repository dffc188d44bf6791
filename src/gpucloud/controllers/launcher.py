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
from gpucloud.core.launch_env import job_environment
from gpucloud.core.lifecycle import Decision, Observed, StopReason, decide, finish_unlaunched
from gpucloud.core.states import JobState, Reason
from gpucloud.engines.base import EngineRef, LaunchSpec, RunStatus
from gpucloud.store.models import Allocation, Device, Job
from gpucloud.store.transitions import transition

log = logging.getLogger("gpucloud.launcher")


@dataclass(frozen=True)
class _Launched:
    job_id: str
    allocation_id: str
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
            allocation = _active_allocation(session, job_id)
            if job is None or job.state != JobState.SCHEDULED or allocation is None:
                return
            if job.stop_request is not None and allocation.launch_attempted_at is None:
                finish = finish_unlaunched(StopReason(job.stop_request))
                transition(session, job, finish.state, finish.reason, now, finish.message)
                return
            allocation.launch_attempted_at = allocation.launch_attempted_at or now
            spec = self._launch_spec(session, job, allocation)
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
            allocation = session.get(Allocation, spec.allocation_id)
            if job is None or allocation is None or job.state != JobState.SCHEDULED:
                return
            allocation.engine_ref = ref
            transition(
                session,
                job,
                JobState.STARTING,
                Reason.LAUNCHED,
                self.ctx.clock.now(),
                f"launched on {allocation.node_id}",
            )

    def _launch_spec(self, session: Session, job: Job, allocation: Allocation) -> LaunchSpec:
        devices = [session.get_one(Device, d) for d in allocation.device_ids]
        indexes = [d.index for d in devices]
        env = job_environment(
            user_env=job.spec.get("env", {}),
            job_id=job.id,
            job_name=job.name,
            allocation_id=allocation.id,
            node_id=allocation.node_id,
            checkpoint_dir=self.ctx.engine.checkpoint_dir(job.id),
            restart_count=job.restart_count,
            gpu_model=devices[0].model if devices else None,
            device_indexes=indexes,
            simulated=any(d.simulated for d in devices),
        )
        return LaunchSpec(
            allocation_id=allocation.id,
            job_id=job.id,
            node_id=allocation.node_id,
            command=list(job.spec["command"]),
            env=env,
            device_indexes=indexes,
            cpu_milli=allocation.cpu_milli,
            memory_mib=allocation.memory_mib,
        )

    # --- watching ----------------------------------------------------------------------------

    def _observe(self) -> None:
        with self.ctx.db.read() as session:
            launched = [
                _Launched(job_id, allocation_id, ref)
                for job_id, allocation_id, ref in session.execute(
                    select(Job.id, Allocation.id, Allocation.engine_ref)
                    .join(Allocation, Allocation.job_id == Job.id)
                    .where(
                        Job.state.in_([JobState.STARTING, JobState.RUNNING]),
                        Allocation.active,
                        Allocation.engine_ref.is_not(None),
                    )
                )
                if ref is not None
            ]
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
            allocation = session.get(Allocation, item.allocation_id)
            if job is None or allocation is None or not allocation.active:
                return
            decision = decide(
                _observed(job, allocation, run),
                now,
                self.ctx.tunables.stop_grace_s,
                self.ctx.tunables.funds_stop_grace_s,
            )
            self._apply(session, job, allocation, decision, run)
        # Signals go out after the commit: the intent is durable before the act.
        if decision.request_stop is not None:
            self.ctx.engine.stop(item.ref)
        if decision.force_stop:
            self.ctx.engine.stop(item.ref, force=True)

    def _apply(
        self,
        session: Session,
        job: Job,
        allocation: Allocation,
        decision: Decision,
        run: RunStatus,
    ) -> None:
        now = self.ctx.clock.now()
        if decision.mark_running:
            allocation.started_at = now
            transition(
                session,
                job,
                JobState.RUNNING,
                Reason.STARTED,
                now,
                f"running on {allocation.node_id}",
            )
        if decision.request_stop is not None:
            allocation.stop_requested_at, allocation.stop_reason = now, decision.request_stop
        if decision.force_stop:
            allocation.stop_forced = True
        if decision.finish is not None:
            finish = decision.finish
            transition(
                session,
                job,
                finish.state,
                finish.reason,
                _ended_at(run, allocation, now),
                finish.message,
                exit_code=finish.exit_code,
            )


def _ended_at(run: RunStatus, allocation: Allocation, now: datetime) -> datetime:
    """When the engine saw the run end (it may have ended while the control plane was down),
    kept between the start we recorded and now, so that clocks that disagree cannot reorder."""
    if run.finished_at is None or allocation.started_at is None:
        return now
    return max(allocation.started_at, min(now, run.finished_at))


def _active_allocation(session: Session, job_id: str) -> Allocation | None:
    return session.scalar(select(Allocation).where(Allocation.job_id == job_id, Allocation.active))


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
