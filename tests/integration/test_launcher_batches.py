"""The launcher's batches (one transaction claims a batch, one records its engine refs, one
applies a pass's observed changes) keep its guarantees: nothing runs twice across a crash
between them, every change of a large pass lands, and a job changed under a batch does not
undo the others. Real SQLite and PostgreSQL, the engine faked at its boundary."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from gpucloud.controllers.context import Tunables
from gpucloud.controllers.launcher import APPLY_BATCH
from gpucloud.core.errors import EngineError, EngineUnavailable, GpucloudError
from gpucloud.core.jobspec import parse_job_spec
from gpucloud.core.states import JobState
from gpucloud.core.tenancy import Principal, Role
from gpucloud.engines.base import EngineRef, LaunchSpec
from gpucloud.store import migrate
from gpucloud.store.db import Database
from gpucloud.store.jobs import create_job
from gpucloud.store.models import Allocation, DeviceClaim, Event, Job, User
from tests.fakes import FakeEngine, gpu_node
from tests.harness import Harness, make_harness


class Crash(BaseException):
    """The control plane dying mid-pass (not an Exception: nothing in the loop catches it)."""


class CrashingEngine(FakeEngine):
    """Dies in ``launch`` once ``crash_after`` runs were started, like a control plane killed
    while a batch's sbatch calls are in flight."""

    crash_after: int | None = None

    def launch(self, spec: LaunchSpec) -> EngineRef:
        if self.crash_after is not None and self.starts >= self.crash_after:
            raise Crash()
        return super().launch(spec)


def tunables(**extra: Any) -> Tunables:
    return Tunables(stop_grace_s=10, inventory_interval_s=0, node_silence_s=0, **extra)


def submit(h: Harness, count: int) -> list[str]:
    with h.ctx.db.write() as session:
        user = session.scalars(select(User)).first()
        assert user is not None
        who = Principal(user.id, user.name, user.tenant_id, "t", Role.ADMIN, True)
        spec = parse_job_spec({"command": ["true"], "cpus": 1, "memory_mib": 256})
        return [create_job(session, h.ctx.ids, who, spec, h.clock.now()).id
                for _ in range(count)]


def states(h: Harness, job_ids: Sequence[str]) -> list[JobState]:
    with h.ctx.db.read() as session:
        by_id = {j.id: j.state for j in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
    return [by_id[j] for j in job_ids]


def test_a_crash_between_the_batched_claim_and_the_recorded_refs_runs_nothing_twice(
        db: Database) -> None:
    engine = CrashingEngine([gpu_node()])
    h = make_harness(db, engine, tunables=tunables(launch_concurrency=1))
    jobs = submit(h, 10)
    engine.crash_after = 6
    with pytest.raises(Crash):
        h.settle()
    # The claim committed for the whole batch, the refs never did: to a restarted launcher
    # all ten may be running, and six are.
    assert engine.starts == 6
    with db.read() as session:
        held = list(session.scalars(select(Allocation).where(Allocation.job_id.in_(jobs))))
    assert len(held) == 10
    assert all(a.launch_attempted_at is not None and a.engine_ref is None for a in held)
    assert states(h, jobs) == [JobState.SCHEDULED] * 10

    engine.crash_after = None
    restarted = h.restart()
    restarted.settle()
    assert engine.starts == 10
    assert all(len(engine.runs_of(j)) == 1 for j in jobs)
    assert states(restarted, jobs) == [JobState.RUNNING] * 10
    with db.read() as session:
        refs = {a.job_id: a.engine_ref for a in session.scalars(select(Allocation))}
    assert refs == {j: f"fake:{engine.run_of(j).spec.launch_id}" for j in jobs}


def test_a_pass_that_sees_many_runs_end_records_each_once(db: Database) -> None:
    count = APPLY_BATCH * 2 + 5  # several apply batches in one pass
    h = make_harness(db, nodes=[gpu_node(f"n{i}", cpu_milli=32000) for i in range(3)])
    jobs = submit(h, count)
    h.settle()
    assert states(h, jobs) == [JobState.RUNNING] * count
    for job_id in jobs:
        h.engine.exit(job_id, 0 if job_id != jobs[7] else 3)
    h.settle(1)
    ended = states(h, jobs)
    assert ended.count(JobState.SUCCEEDED) == count - 1 and ended[7] is JobState.FAILED
    with db.read() as session:
        assert not list(session.scalars(select(Allocation).where(Allocation.active)))
        assert not list(session.scalars(select(DeviceClaim)))
        finals = list(session.scalars(select(Event.object_id).where(
            Event.kind == "job.state", Event.after.in_(["SUCCEEDED", "FAILED"]))))
        code = session.get_one(Job, jobs[7]).exit_code
    assert sorted(finals) == sorted(jobs) and code == 3


def test_a_job_changed_under_a_batched_apply_does_not_undo_the_others(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL only: on SQLite a write transaction holds the only write lock, so no other
    writer can change a row between the batch's read and its flush."""
    db = Database(pg_url)
    migrate.upgrade(db)
    try:
        h = make_harness(db)
        jobs = submit(h, 3)
        h.settle()
        assert states(h, jobs) == [JobState.RUNNING] * 3
        for job_id in jobs:
            h.engine.exit(job_id, 0)
        other = Database(pg_url)  # another writer (an API replica, say)
        target = max(jobs)  # runs are applied in job id order: this one last
        changed: list[str] = []

        def change_one_behind_the_batch(session: Session, *_: Any) -> None:
            """When the batch writes its first ended job, another writer changes the last."""
            ending = [o for o in session.dirty if isinstance(o, Job)
                      and o.state is JobState.SUCCEEDED and o.id != target]
            if changed or not ending:
                return
            changed.append(target)
            with other.engine.begin() as conn:
                conn.execute(text("UPDATE jobs SET version = version + 1, message = 'touched' "
                                  "WHERE id = :id"), {"id": target})

        caplog.set_level(logging.INFO, "gpucloud.launcher")
        event.listen(Session, "before_flush", change_one_behind_the_batch)
        try:
            h.settle(1)
        finally:
            event.remove(Session, "before_flush", change_one_behind_the_batch)
            other.dispose()
        assert changed == [target]
        assert "applying its batch one run at a time" in caplog.text
        # The batch was undone and applied run by run: every run ended, the changed job too
        # (read again after its change), each with one final event.
        assert states(h, jobs) == [JobState.SUCCEEDED] * 3
        with db.read() as session:
            finals = list(session.scalars(select(Event.object_id).where(
                Event.kind == "job.state", Event.after == "SUCCEEDED")))
            assert not list(session.scalars(select(Allocation).where(Allocation.active)))
        assert sorted(finals) == sorted(jobs)
    finally:
        db.dispose()


class PreparingEngine(FakeEngine):
    """Cannot prepare the checkpoint dir of some jobs: for good (an EngineError) or for now
    (EngineUnavailable), as an engine whose file system or mounts fail for one job would."""

    broken: dict[str, GpucloudError] = {}

    def checkpoint_dir(self, job_id: str) -> str:
        if job_id in self.broken:
            raise self.broken[job_id]
        return super().checkpoint_dir(job_id)


def test_a_job_whose_launch_cannot_be_prepared_never_holds_up_its_batch(db: Database) -> None:
    engine = PreparingEngine([gpu_node()])
    h = make_harness(db, engine)
    jobs = submit(h, 4)
    engine.broken = {jobs[1]: EngineError("the checkpoint dir's file system is read-only"),
                     jobs[2]: EngineUnavailable("the engine is restarting")}
    h.settle()
    assert states(h, jobs) == [JobState.RUNNING, JobState.FAILED, JobState.SCHEDULED,
                               JobState.RUNNING]
    with db.read() as session:
        failed = session.get_one(Job, jobs[1])
        waiting = list(session.scalars(select(Allocation).where(Allocation.job_id == jobs[2])))
    assert failed.reason == "LAUNCH_FAILED"
    assert failed.message == ("could not prepare the launch: the checkpoint dir's file system "
                              "is read-only")
    assert waiting and all(a.launch_attempted_at is None for a in waiting)  # rolled back
    assert engine.runs_of(jobs[1]) == [] and engine.runs_of(jobs[2]) == []

    engine.broken = {}  # the engine is back: the waiting job launches, the failed one stays
    h.settle()
    assert states(h, jobs) == [JobState.RUNNING, JobState.FAILED, JobState.RUNNING,
                               JobState.RUNNING]
