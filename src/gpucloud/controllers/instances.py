"""Reconciles every instance with its current job, reclaims idle GPUs, frees deleted disks.

Level-triggered: each pass reads what the user wants (``desired``) and what the job is doing,
and takes one step (``core.instances.next_step``): submit the next job, ask the job to stop, or
record the instance's new state. The job itself is driven by the scheduler, launcher, metering
and self-healing like any job. A restart at any line converges: the job is written in the same
transaction as the instance that points at it.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from gpucloud.billing.leases import LeaseKind
from gpucloud.billing.leases import price_per_hour_minor as lease_price_per_hour
from gpucloud.billing.pricing import Footprint, Tier, price_per_hour_minor, version_at
from gpucloud.controllers.context import Context
from gpucloud.core.clock import as_utc
from gpucloud.core.errors import EngineError
from gpucloud.core.instances import (
    HOLDS_JOB,
    Desired,
    IdleAction,
    IdlePolicy,
    InstanceReason,
    InstanceState,
    JobView,
    idle_step,
    instance_command,
    next_step,
)
from gpucloud.core.lifecycle import StopReason
from gpucloud.core.states import JobState, Reason
from gpucloud.engines import instance_host
from gpucloud.engines.gpu_utilization import NvmlUtilization
from gpucloud.store import instances as store
from gpucloud.store.inventory import allocation_gpu_model
from gpucloud.store.jobs import active_allocations, request_stop
from gpucloud.store.models import Device, Job
from gpucloud.store.models_instances import Instance
from gpucloud.store.prices import load_versions
from gpucloud.store.transitions import record_event, transition

log = logging.getLogger("gpucloud.instances")


class InstanceController:
    name = "instances"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._nvml = NvmlUtilization()

    def reconcile_once(self) -> None:
        for instance_id in self._unsettled():
            try:
                self._reconcile(instance_id)
            except StaleDataError:
                log.info("instance %s changed while reconciling; next pass", instance_id)
        self._reclaim_idle()
        self._free_disks()

    # --- instance <-> job ---------------------------------------------------------------------

    def _unsettled(self) -> list[str]:
        with self.ctx.db.read() as session:
            return list(session.scalars(
                select(Instance.id).where(
                    Instance.state.in_([s.value for s in HOLDS_JOB])
                    | ((Instance.desired == Desired.DELETED)
                       & (Instance.state != InstanceState.DELETED))
                ).order_by(Instance.id)
            ))

    def _reconcile(self, instance_id: str) -> None:
        with self.ctx.db.read() as session:
            instance = session.get_one(Instance, instance_id)
            job = store.current_job(session, instance)
            step = next_step(Desired(instance.desired), InstanceState(instance.state),
                             _view(job))
            run, token = instance.runs + 1, instance.jupyter_token
        if step == type(step)():
            return
        env = (instance_host.prepare(self.ctx.engine, instance_id, run, token)
               if step.create_job else {})
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            instance = session.get_one(Instance, instance_id)
            job = store.current_job(session, instance)
            again = next_step(Desired(instance.desired), InstanceState(instance.state),
                              _view(job))
            if again != step:
                return  # changed since the read: the next pass decides afresh
            if step.state is not None and step.state is not instance.state:
                store.set_state(session, instance, step.state, step.reason or
                                InstanceReason.WAITING, now, step.message)
            if step.stop_job and job is not None:
                _stop(session, job, now)
            if step.create_job:
                self._start(session, instance, env, now)

    def _start(self, session: Session, instance: Instance, env: dict[str, str],
               now: datetime) -> None:
        spec = store.spec_of(instance)
        home = env["HOME"]
        command = instance_command(instance.id, spec.jupyter, sys.executable, home)
        job_spec = spec.job_spec(command, env, no_gpu=instance.no_gpu)
        store.start_job(session, self.ctx.ids, instance, job_spec, now)

    # --- idle reclamation ---------------------------------------------------------------------

    def _reclaim_idle(self) -> None:
        with self.ctx.db.read() as session:
            rows = list(session.scalars(
                select(Instance).where(
                    Instance.state == InstanceState.RUNNING, Instance.desired == Desired.RUNNING,
                    Instance.no_gpu.is_(False), Instance.gpus > 0,
                )
            ))
            work = []
            for instance in rows:
                policy = store.idle_policy(session, instance.tenant_id)
                if policy is not None:
                    work.append((instance.id, policy, self._utilization(session, instance)))
        for instance_id, policy, pct in work:
            try:
                self._idle_once(instance_id, policy, pct)
            except StaleDataError:
                continue

    def _utilization(self, session: Session, instance: Instance) -> int | None:
        """Real GPUs: NVML, now. Simulated ones: the last value reported for the instance."""
        if instance.current_job_id is None:
            return None
        devices = [session.get(Device, d) for a in active_allocations(
            session, instance.current_job_id) for d in a.device_ids]
        real = [d for d in devices if d is not None and not d.simulated]
        if real:
            return self._nvml.read([d.index for d in real])
        return instance.utilization_pct

    def _idle_once(self, instance_id: str, policy: IdlePolicy, pct: int | None) -> None:
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            instance = session.get_one(Instance, instance_id)
            if instance.state is not InstanceState.RUNNING or instance.no_gpu:
                return
            low_since = as_utc(instance.low_since) if instance.low_since else None
            step = idle_step(policy, pct, low_since, instance.idle_warned_at is not None, now)
            instance.low_since = step.low_since
            if step.low_since is None:
                instance.idle_warned_at = None
            if step.warn and step.low_since is not None:
                instance.idle_warned_at = now
                what = ("switched to no-GPU mode" if policy.action is IdleAction.NO_GPU
                        else "stopped")
                _event(session, instance, "instance.idle_warning", now,
                       f"GPU utilisation below {policy.below_pct}% for "
                       f"{_minutes(now - step.low_since)}: it will be {what} in "
                       f"{_minutes(timedelta(seconds=policy.grace_s))} unless it gets busy "
                       "(the disk is kept)")
            if step.reclaim:
                self._reclaim(session, instance, policy, now)

    def _reclaim(self, session: Session, instance: Instance, policy: IdlePolicy,
                 now: datetime) -> None:
        job = store.current_job(session, instance)
        if job is None:
            return
        rate = self._saving_per_hour(session, instance, job, policy.action, now)
        store.open_saving(instance, rate, now)
        if policy.action is IdleAction.NO_GPU:
            instance.no_gpu = True
            message = "idle GPUs released: restarting without GPUs (CPU price)"
        else:
            instance.desired = Desired.STOPPED
            message = "idle GPUs released: stopped (the disk is kept)"
        _event(session, instance, "instance.reclaimed", now,
               f"{message}; saving {rate} minor units per hour")
        store.set_state(session, instance, InstanceState.STOPPING,
                        InstanceReason.IDLE_RECLAIMED, now, message)
        _stop(session, job, now)

    def _saving_per_hour(self, session: Session, instance: Instance, job: Job,
                         action: IdleAction, now: datetime) -> int:
        """What the tenant stops paying per hour: its run's price, less what replaces it."""
        version = version_at(load_versions(session), now)
        allocations = active_allocations(session, job.id)
        model = allocation_gpu_model(session, allocations[0]) if allocations else job.gpu_type
        held = Footprint(job.gpus, model, job.cpu_milli, job.memory_mib, Tier(job.tier))
        if action is IdleAction.NO_GPU:
            instead = price_per_hour_minor(version, Footprint(0, None, job.cpu_milli,
                                                              job.memory_mib, Tier(job.tier)))
        else:
            instead = lease_price_per_hour(version, LeaseKind.STORAGE, "", instance.disk_gib)
        return price_per_hour_minor(version, held) - instead

    # --- deleted disks ------------------------------------------------------------------------

    def _free_disks(self) -> None:
        with self.ctx.db.read() as session:
            deleted = list(session.scalars(
                select(Instance.id).where(Instance.state == InstanceState.DELETED,
                                          Instance.disk_freed_at.is_(None))
            ))
        for instance_id in deleted:
            try:
                instance_host.remove(self.ctx.engine, instance_id)
            except (OSError, EngineError) as err:
                log.warning("instance %s: cannot remove its disk yet: %s", instance_id, err)
                continue
            with self.ctx.db.write() as session:
                session.get_one(Instance, instance_id).disk_freed_at = self.ctx.clock.now()


def _view(job: Job | None) -> JobView | None:
    if job is None:
        return None
    return JobView(JobState(job.state), job.reason, job.message, job.exit_code)


def _stop(session: Session, job: Job, now: datetime) -> None:
    """Not yet placed: cancelled at once. Placed: the launcher stops it (idempotent)."""
    state = JobState(job.state)
    if state.terminal:
        return
    message = "stopped with its instance"
    if state in (JobState.PENDING, JobState.QUEUED):
        transition(session, job, JobState.CANCELLED, Reason.CANCELLED_BY_USER, now, message)
    else:
        request_stop(session, job, StopReason.CANCELLED, now, message)


def _event(session: Session, instance: Instance, kind: str, now: datetime, message: str) -> None:
    record_event(session, at=now, object_kind=store.OBJECT_KIND, object_id=instance.id,
                 kind=kind, tenant_id=instance.tenant_id, reason=InstanceReason.IDLE_RECLAIMED
                 if kind == "instance.reclaimed" else "", message=message)


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes} min" if minutes else f"{int(span.total_seconds())} s"
