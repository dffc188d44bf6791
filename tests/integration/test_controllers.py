"""Controllers against real SQLite and PostgreSQL, with the engine faked at its boundary."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gpucloud.billing.money import Money
from gpucloud.controllers.context import Tunables
from gpucloud.core.jobspec import parse_job_spec
from gpucloud.core.states import JobState
from gpucloud.core.tenancy import Principal, Role
from gpucloud.store.accounts import create_tenant
from gpucloud.store.billing import topup
from gpucloud.store.db import Database
from gpucloud.store.jobs import cancel_job, create_job
from gpucloud.store.models import Allocation, DeviceClaim, Event, Job
from tests.harness import Harness, make_harness

ADMIN = Principal("usr_admin", "admin", "tnt_x", "t", Role.ADMIN, False)


def submit(h: Harness, gpus: int, tenant: str | None = None, **extra: object) -> str:
    with h.ctx.db.write() as session:
        from gpucloud.store.models import User

        user = session.scalars(select(User)).first()
        assert user is not None
        who = Principal(user.id, user.name, tenant or user.tenant_id, "t", Role.ADMIN, True)
        spec = parse_job_spec({"command": ["train"], "gpus": gpus, "cpus": 1, **extra})
        return create_job(session, h.ctx.ids, who, spec, h.clock.now()).id


def state(h: Harness, job_id: str) -> Job:
    with h.ctx.db.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_two_half_node_jobs_run_and_the_third_waits_then_runs(db: Database) -> None:
    h = make_harness(db)
    a, b, c = submit(h, 4), submit(h, 4), submit(h, 4)
    h.settle()
    assert [state(h, j).state for j in (a, b, c)] == [
        JobState.RUNNING,
        JobState.RUNNING,
        JobState.QUEUED,
    ]
    devices_a = set(h.engine.run_of(a).spec.replicas[0].device_indexes)
    devices_b = set(h.engine.run_of(b).spec.replicas[0].device_indexes)
    assert devices_a.isdisjoint(devices_b) and len(devices_a | devices_b) == 8
    env = h.engine.run_of(a).spec.replicas[0].env
    assert env["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, sorted(devices_a)))
    assert env["GPUCLOUD_JOB_ID"] == a and env["GPUCLOUD_CHECKPOINT_DIR"] == f"/checkpoints/{a}"
    assert state(h, c).message == "0/1 nodes fit: 1 too few free GPUs"

    h.engine.exit(a, 0)
    h.settle()
    assert state(h, a).state is JobState.SUCCEEDED and state(h, a).exit_code == 0
    assert state(h, c).state is JobState.RUNNING
    assert set(h.engine.run_of(c).spec.replicas[0].device_indexes) == devices_a


def test_every_transition_is_an_event_in_order(db: Database) -> None:
    h = make_harness(db)
    job_id = submit(h, 1)
    h.settle()
    h.engine.exit(job_id, 3)
    h.settle()
    with db.read() as session:
        afters = list(
            session.scalars(select(Event.after).where(Event.object_id == job_id).order_by(Event.id))
        )
    assert afters == ["PENDING", "QUEUED", "SCHEDULED", "STARTING", "RUNNING", "FAILED"]
    assert state(h, job_id).exit_code == 3


def test_cancel_stops_politely_then_forcefully_and_frees_the_devices(db: Database) -> None:
    h = make_harness(db)
    job_id = submit(h, 8)
    h.settle()
    with db.write() as session:
        job = session.get_one(Job, job_id)
        cancel_job(session, job, ADMIN, h.clock.now())
    h.settle()
    assert h.engine.run_of(job_id).signals == ["TERM"]
    h.clock.advance(11)
    h.settle()
    assert h.engine.run_of(job_id).signals == ["TERM", "KILL"]
    h.engine.exit(job_id, 137)
    h.settle()
    job = state(h, job_id)
    assert (job.state, job.exit_code) == (JobState.CANCELLED, 137)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(DeviceClaim)) == 0
        assert session.scalar(select(func.count()).where(Allocation.active)) == 0


def test_cancel_of_a_queued_job_is_immediate(db: Database) -> None:
    h = make_harness(db)
    blocker, waiting = submit(h, 8), submit(h, 8)
    h.settle()
    with db.write() as session:
        cancel_job(session, session.get_one(Job, waiting), ADMIN, h.clock.now())
    assert state(h, waiting).state is JobState.CANCELLED
    assert state(h, blocker).state is JobState.RUNNING


def test_max_duration_is_enforced(db: Database) -> None:
    h = make_harness(db)
    job_id = submit(h, 1, max_duration="1m")
    h.settle()
    h.clock.advance(59)
    h.settle()
    assert h.engine.run_of(job_id).signals == []
    h.clock.advance(1)
    h.settle()
    assert h.engine.run_of(job_id).signals == ["TERM"]
    h.engine.exit(job_id, 143)
    h.settle()
    job = state(h, job_id)
    assert (job.state, job.reason) == (JobState.FAILED, "MAX_DURATION_EXCEEDED")


def test_restart_at_any_point_launches_nothing_twice(db: Database) -> None:
    h = make_harness(db)
    job_id = submit(h, 2)
    h.settle(1)
    assert state(h, job_id).state is JobState.RUNNING
    # Rewind the database to a crash right after the engine launched the job but before the
    # launcher committed STARTING (the engine's side, the running process, stays).
    with db.write() as session:
        job = session.get_one(Job, job_id)
        job.state, job.started_at = JobState.SCHEDULED, None
        allocation = session.scalars(select(Allocation)).one()
        allocation.engine_ref, allocation.started_at = None, None
    restarted = h.restart()
    restarted.settle()
    assert h.engine.starts == 1
    assert state(restarted, job_id).state is JobState.RUNNING


def test_a_run_the_engine_lost_fails_with_a_reason(db: Database) -> None:
    h = make_harness(db)
    job_id = submit(h, 1)
    h.settle()
    h.engine.runs.clear()
    h.settle()
    job = state(h, job_id)
    assert (job.state, job.reason) == (JobState.FAILED, "LOST")


def test_a_device_cannot_be_claimed_twice(db: Database) -> None:
    h = make_harness(db)
    job_id = submit(h, 1)
    h.settle()
    with db.read() as session:
        allocation = session.scalars(select(Allocation)).one()
    with pytest.raises(IntegrityError), db.write() as session:
        session.add(DeviceClaim(device_id=allocation.device_ids[0], allocation_id=allocation.id))
    assert state(h, job_id).state is JobState.RUNNING


def test_unhealthy_nodes_get_no_work(db: Database) -> None:
    h = make_harness(db)
    h.engine.node_reports = []
    h.settle()
    job_id = submit(h, 1)
    h.settle()
    job = state(h, job_id)
    assert job.state is JobState.QUEUED and job.message == "0/1 nodes fit: 1 unhealthy"


def test_the_scheduler_places_a_long_queue_window_by_window(db: Database) -> None:
    h = make_harness(db, tunables=Tunables(inventory_interval_s=0, queue_window=3))
    jobs = [submit(h, 1) for _ in range(8)]
    h.settle(1)
    assert sum(state(h, j).state is JobState.RUNNING for j in jobs) == 3
    h.settle(2)
    assert all(state(h, j).state is JobState.RUNNING for j in jobs)


def test_tenants_share_the_fleet_by_dominant_share_not_arrival(db: Database) -> None:
    h = make_harness(db)
    with h.ctx.db.write() as session:
        other = create_tenant(session, h.ctx.ids, "second", h.clock.now()).id
        topup(session, other, Money(10**9, "CNY"), "first", "test", h.clock.now())
    first = [submit(h, 1) for _ in range(8)]  # enough to take all 8 GPUs in arrival order
    second = [submit(h, 1, tenant=other) for _ in range(4)]
    h.settle()
    running = {j for j in first + second if state(h, j).state is JobState.RUNNING}
    assert len(running) == 8
    assert len(running & set(second)) == 4 and len(running & set(first)) == 4
    waiting = state(h, first[-1])
    assert waiting.state is JobState.QUEUED and waiting.reason == "WAITING_FOR_RESOURCES"


def test_a_short_job_backfills_without_delaying_the_reserved_big_one(db: Database) -> None:
    h = make_harness(db)
    long_running = submit(h, 4, max_duration="1h")
    h.settle()
    big = submit(h, 8)  # must wait for the 4-GPU job: reserved for when it ends (1 h)
    short = submit(h, 2, max_duration="10m")  # ends before then: may use idle GPUs
    too_long = submit(h, 2, max_duration="2h")  # fits now, but would delay the big one
    h.settle()
    assert state(h, long_running).state is JobState.RUNNING
    assert state(h, big).state is JobState.QUEUED
    assert state(h, short).state is JobState.RUNNING
    held = state(h, too_long)
    assert held.state is JobState.QUEUED and held.reason == "WAITING_IN_QUEUE"
