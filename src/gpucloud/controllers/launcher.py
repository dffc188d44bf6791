"""SCHEDULED -> STARTING -> RUNNING -> terminal: hands placed jobs to the engine and watches them.

Crash safety: ``launch_attempted_at`` is written before the engine is called, and the engine's
launch is idempotent on the allocation id, so a restart at any line neither loses a job nor runs
it twice. Engine calls happen outside database transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from gpucloud.controllers.context import Context
from gpucloud.controllers.images import images_ready
from gpucloud.controllers.launch_spec import build_launch_spec
from gpucloud.core.clock import as_utc
from gpucloud.core.errors import EngineError, EngineUnavailable, GpucloudError
from gpucloud.core.faults import exit_hint
from gpucloud.core.lifecycle import Decision, Observed, StopReason, decide, finish_unlaunched
from gpucloud.core.runs import RunPhase
from gpucloud.core.states import JobState, Reason
from gpucloud.engines.base import EngineRef, LaunchSpec, NodeReport, RunStatus
from gpucloud.store.health import record_exit_hint
from gpucloud.store.inventory import sync_nodes
from gpucloud.store.jobs import active_allocations_of
from gpucloud.store.models import Allocation, Job, Node
from gpucloud.store.restarts import credit_fault, requeue_after_fault
from gpucloud.store.transitions import transition

log = logging.getLogger("gpucloud.launcher")
LAUNCH_BATCH = 64  # jobs launched per transaction pair
# Runs whose observed change is applied per savepoint and flush. Small enough that the rows a
# batch holds in the session stay few (releasing a job's allocations matches them in Python
# against every allocation the session holds).
APPLY_BATCH = 32
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
        self._executor: ThreadPoolExecutor | None = None

    def reconcile_once(self) -> None:
        scheduled = self._scheduled_job_ids()
        for first in range(0, len(scheduled), LAUNCH_BATCH):
            try:
                self._launch(scheduled[first:first + LAUNCH_BATCH])
            except StaleDataError:
                log.info("a job changed while launching; retrying next pass")
        self._observe()

    # --- launching ---------------------------------------------------------------------------

    def _scheduled_job_ids(self) -> list[str]:
        with self.ctx.db.read() as session:
            return list(
                session.scalars(
                    select(Job.id).where(Job.state == JobState.SCHEDULED).order_by(Job.id)
                )
            )

    def _launch(self, job_ids: list[str]) -> None:
        """Launch a batch: the intents in one transaction, the engine calls side by side (a
        Slurm sbatch waits on slurmctld, not on us), the outcomes in one transaction."""
        specs = self._prepare(job_ids)
        if not specs:
            return
        outcomes = list(self._pool().map(self._engine_launch, specs))
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            jobs, held = _load_jobs(session, [spec.job_id for spec in specs])
            for spec, outcome in zip(specs, outcomes, strict=True):
                self._record(session, jobs.get(spec.job_id), held.get(spec.job_id, []), spec,
                             outcome, now)

    def _prepare(self, job_ids: list[str]) -> list[LaunchSpec]:
        """Write ``launch_attempted_at`` before the engine is called (a restart then knows the
        job may be running, and the idempotent launch finds it), and build the specs. The batch's
        rows are read with a few queries up front, not a few per job."""
        now = self.ctx.clock.now()
        specs = []
        with self.ctx.db.write() as session:
            jobs, held = _load_jobs(session, job_ids)
            _nodes = _load_placement(session, held)  # kept: the session holds rows weakly
            for job_id in job_ids:
                job = jobs.get(job_id)
                allocations = held.get(job_id, [])
                if job is None or job.state != JobState.SCHEDULED or not allocations:
                    continue
                attempted = any(a.launch_attempted_at is not None for a in allocations)
                if job.stop_request is not None and not attempted:
                    finish = finish_unlaunched(StopReason(job.stop_request))
                    transition(session, job, finish.state, finish.reason, now, finish.message)
                    continue
                spec = self._prepare_one(session, job, allocations, attempted, now)
                if spec is not None:
                    specs.append(spec)
        return specs

    def _prepare_one(self, session: Session, job: Job, allocations: list[Allocation],
                     attempted: bool, now: datetime) -> LaunchSpec | None:
        """One job's spec, in a savepoint: a job whose image, checkpoint dir or mounts cannot be
        prepared fails (its own input: GpucloudError) or waits for the next pass (anything
        else), and never holds up the rest of its batch."""
        try:
            with session.begin_nested():
                if not attempted and not images_ready(session, self.ctx.engine, job,
                                                      allocations):
                    return None  # its image is being prepared on its nodes (controllers/images)
                for allocation in allocations:
                    allocation.launch_attempted_at = allocation.launch_attempted_at or now
                return build_launch_spec(session, self.ctx.engine, job, allocations)
        except EngineUnavailable as err:
            log.warning("job %s: the engine is unavailable, will retry: %s", job.id, err)
        except GpucloudError as err:
            transition(session, job, JobState.FAILED, Reason.LAUNCH_FAILED, now,
                       f"could not prepare the launch: {err}")
        except Exception:
            log.exception("job %s: preparing the launch failed, will retry", job.id)
        return None

    def _engine_launch(self, spec: LaunchSpec) -> EngineRef | GpucloudError:
        try:
            return self.ctx.engine.launch(spec)
        except (EngineError, EngineUnavailable) as err:
            return err

    def _record(self, session: Session, job: Job | None, allocations: list[Allocation],
                spec: LaunchSpec, outcome: EngineRef | GpucloudError, now: datetime) -> None:
        if isinstance(outcome, EngineUnavailable):  # transient: the next pass launches again
            log.warning("job %s: the engine is unavailable, will retry: %s", spec.job_id, outcome)
            return
        if job is None or job.state != JobState.SCHEDULED:
            return  # cancelled meanwhile: the next look at the run stops it
        if isinstance(outcome, GpucloudError):
            transition(session, job, JobState.FAILED, Reason.LAUNCH_FAILED, now, str(outcome))
            return
        if {a.id for a in allocations} != {r.allocation_id for r in spec.replicas}:
            return
        for allocation in allocations:
            allocation.engine_ref = outcome
        transition(session, job, JobState.STARTING, Reason.LAUNCHED, now,
                   f"launched on {', '.join(a.node_id for a in allocations)}")

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.ctx.tunables.launch_concurrency,
                thread_name_prefix="gpucloud-launch",
            )
        return self._executor

    # --- watching ----------------------------------------------------------------------------

    def _observe(self) -> None:
        """Ask the engine about every launched run; take the write lock only for the runs whose
        decision changes something (most passes change nothing for most runs)."""
        with self.ctx.db.read() as session:
            grouped: dict[tuple[str, str], list[Allocation]] = {}
            jobs: dict[str, Job] = {}
            for job, allocation in session.execute(
                select(Job, Allocation)
                .join(Allocation, Allocation.job_id == Job.id)
                .where(
                    Job.state.in_([JobState.STARTING, JobState.RUNNING]),
                    Allocation.active,
                    Allocation.engine_ref.is_not(None),
                )
                .order_by(Job.id, Allocation.replica)
            ):
                if allocation.engine_ref is not None:
                    jobs[job.id] = job
                    grouped.setdefault((job.id, allocation.engine_ref), []).append(allocation)
        if not grouped:
            return
        refs = [ref for _, ref in grouped]
        asked_at = self.ctx.clock.now()
        statuses = self.ctx.engine.status(refs)
        self.ctx.seen_running.observed(
            {a.id: asked_at for (_, ref), allocations in grouped.items()
             if statuses[ref].phase is RunPhase.RUNNING for a in allocations},
            (a.id for allocations in grouped.values() for a in allocations))
        now = self.ctx.clock.now()
        acting = [
            (_Launched(job_id, tuple(a.id for a in allocations), ref), statuses[ref])
            for (job_id, ref), allocations in grouped.items()
            if _acts(self._decide(jobs[job_id], allocations[0], statuses[ref], now))
        ]
        if acting:
            self._reconcile_runs(acting, self._fresh_nodes(acting))

    def _decide(self, job: Job, rank0: Allocation, run: RunStatus, now: datetime) -> Decision:
        return decide(
            _observed(job, rank0, run),
            now,
            self.ctx.tunables.stop_grace_s,
            self.ctx.tunables.funds_stop_grace_s,
        )

    def _fresh_nodes(self, acting: list[tuple[_Launched, RunStatus]]) -> list[NodeReport] | None:
        """A run that ended with its node is news about the nodes: read them now, so that the
        job is not requeued onto the node that just failed before the inventory's next look."""
        if not any(run.platform_fault for _, run in acting):
            return None
        try:
            return self.ctx.engine.nodes()
        except (EngineError, EngineUnavailable) as err:
            log.warning("could not read the nodes after a node failure: %s", err)
            return None

    def _reconcile_runs(self, acting: list[tuple[_Launched, RunStatus]],
                        nodes: list[NodeReport] | None = None) -> None:
        """Apply the decisions in one transaction; signals go out after it commits."""
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            if nodes is not None:
                sync_nodes(session, self.ctx.engine.name, nodes, now)
            done = self._apply_all(session, acting, now)
        # Signals go out after the commit: the intent is durable before the act.
        for item, decision, node_id in done:
            if decision.request_stop is not None:
                self.ctx.engine.stop(item.ref)
            if decision.force_stop:
                self.ctx.engine.stop(item.ref, force=True)
            finish = decision.finish
            if finish is not None and finish.reason is Reason.EXIT_NONZERO and not (
                    decision.restart):
                self._hint(item, node_id)

    def _apply_all(self, session: Session, acting: list[tuple[_Launched, RunStatus]],
                   now: datetime) -> list[tuple[_Launched, Decision, str]]:
        done: list[tuple[_Launched, Decision, str]] = []
        for first in range(0, len(acting), APPLY_BATCH):
            done += self._apply_batch(session, acting[first:first + APPLY_BATCH], now)
        return done

    def _apply_batch(self, session: Session, acting: list[tuple[_Launched, RunStatus]],
                     now: datetime) -> list[tuple[_Launched, Decision, str]]:
        """A batch of runs in one savepoint, its rows read up front and written in one flush
        (no autoflush in between: what the batch writes, no later statement of it reads; a
        job's release is its own statements). If a job changed under us, that savepoint is
        undone and each run gets its own, so that only the changed job waits for the next
        pass."""
        try:
            with session.begin_nested():
                _jobs, _allocations = _load_runs(session, [item for item, _ in acting])
                with session.no_autoflush:
                    done = [(item, *applied) for item, run in acting
                            if (applied := self._reconcile_run(session, item, run, now))
                            is not None]
                session.flush()
            return done
        except StaleDataError:
            log.info("a job changed while observing; applying its batch one run at a time")
        done = []
        for item, run in acting:
            try:
                with session.begin_nested():
                    applied = self._reconcile_run(session, item, run, now)
                    session.flush()  # inside the savepoint: a stale row fails here, alone
            except StaleDataError:
                log.info("job %s changed while observing; retrying next pass", item.job_id)
                continue
            if applied is not None:
                done.append((item, *applied))
        return done

    def _reconcile_run(self, session: Session, item: _Launched, run: RunStatus,
                       now: datetime) -> tuple[Decision, str] | None:
        job = session.get(Job, item.job_id)
        allocations = [session.get(Allocation, a) for a in item.allocation_ids]
        if job is None or any(a is None or not a.active for a in allocations):
            return None
        held = [a for a in allocations if a is not None]
        decision = self._decide(job, held[0], run, now)  # again: the row may have moved
        self._apply(session, job, held, decision, run)
        return decision, held[0].node_id

    def _ended_at(self, run: RunStatus, first: Allocation, now: datetime) -> datetime:
        return _ended_at(run, first, now, self.ctx.seen_running.until(first.id))

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
            requeue_after_fault(session, job, first, self._ended_at(run, first, now), give_up,
                                now)
        elif decision.finish is not None:
            finish = decision.finish
            transition(
                session,
                job,
                finish.state,
                finish.reason,
                self._ended_at(run, first, now),
                finish.message,
                exit_code=finish.exit_code,
            )


IN_CHUNK = 500  # ids per IN (...) list: far below any database's limit on parameters


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for first in range(0, len(ids), IN_CHUNK):
        yield ids[first:first + IN_CHUNK]


def _load_jobs(session: Session, job_ids: Sequence[str]
               ) -> tuple[dict[str, Job], dict[str, list[Allocation]]]:
    """A batch's jobs and their active allocations (rank order), two queries per chunk."""
    jobs: dict[str, Job] = {}
    held: dict[str, list[Allocation]] = {}
    for chunk in _chunks(job_ids):
        jobs.update((job.id, job) for job in session.scalars(select(Job).where(Job.id.in_(chunk))))
        held.update(active_allocations_of(session, chunk))
    return jobs, held


def _load_placement(session: Session, held: dict[str, list[Allocation]]) -> list[Node]:
    """The nodes of the allocations, with their devices, into the session: building the launch
    specs then finds them there instead of reading one row at a time. The caller keeps the list
    (the session holds its rows weakly)."""
    node_ids = sorted({a.node_id for allocations in held.values() for a in allocations})
    return [node for chunk in _chunks(node_ids)
            for node in session.scalars(select(Node).where(Node.id.in_(chunk)))]


def _load_runs(session: Session, items: Sequence[_Launched]
               ) -> tuple[list[Job], list[Allocation]]:
    """The jobs and allocations of the runs being reconciled, into the session (kept by the
    caller, as above)."""
    job_ids = [item.job_id for item in items]
    allocation_ids = [a for item in items for a in item.allocation_ids]
    jobs = [job for chunk in _chunks(job_ids)
            for job in session.scalars(select(Job).where(Job.id.in_(chunk)))]
    allocations = [a for chunk in _chunks(allocation_ids)
                   for a in session.scalars(select(Allocation).where(Allocation.id.in_(chunk)))]
    return jobs, allocations


def _ended_at(run: RunStatus, allocation: Allocation, now: datetime,
              seen_running: datetime | None) -> datetime:
    """When the engine saw the run end (it may have ended while the control plane was down),
    kept between the start we recorded and now, so that clocks that disagree cannot reorder;
    and never before the launcher last saw it running (metering may have charged up to then:
    the engine's clock or its exit bookkeeping can lag that sighting)."""
    if run.finished_at is None or allocation.started_at is None:
        return now
    ended = max(allocation.started_at, min(now, run.finished_at))
    return ended if seen_running is None else max(ended, min(now, seen_running))


def _acts(decision: Decision) -> bool:
    return bool(decision.mark_running or decision.finish or decision.request_stop
                or decision.force_stop)


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
