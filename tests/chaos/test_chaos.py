"""Chaos: jobs of every kind run while control-plane processes are SIGKILLed and restarted.

Three replicas of ``gpucloud up`` share one PostgreSQL database and one data dir. A killer picks
a random live process (the leader, a follower, or one still starting) at a random moment,
SIGKILLs it and starts it again; meanwhile a workload submits batch, gang (2 nodes), CPU-only
and cancelled jobs to whichever replica answers. At the end every invariant is checked from the
database and the files the jobs wrote:

- every job reached exactly one terminal state (one terminal event, none after it);
- no job ran twice: each run appends its allocation id and attempt to a file, counted;
- no device was allocated twice at any moment (the allocations' history, per device);
- every running second was charged exactly once (usage per allocation = its run time, which
  ends when the job ended) and ``admin ledger verify`` passes.

Short mode (CI): 15 kills. Full mode: ``GPUCLOUD_CHAOS_KILLS=200 .venv/bin/python -m pytest
tests/chaos -s``. ``GPUCLOUD_CHAOS_SEED`` replays a run's random choices.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from gpucloud.store.models import Allocation, AllocationMeter, Event, Job
from gpucloud.store.models_control import LeaderLease
from tests.chaos.cluster import Api, Replica, wait_healthy
from tests.servers import free_port, kill_job_processes

KILLS = int(os.environ.get("GPUCLOUD_CHAOS_KILLS", "15"))
SEED = int(os.environ.get("GPUCLOUD_CHAOS_SEED", str(random.randrange(1 << 30))))
# Three: a serving replica is killed only while another serves (the API stays up), and on a
# busy CPU a restart takes many seconds; with more replicas the killer waits less often.
REPLICAS = 3
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
RUN = 'echo "$GPUCLOUD_ALLOCATION_ID $GPUCLOUD_RESTART_COUNT" >> "$GPUCLOUD_CHECKPOINT_DIR/runs"'

pytestmark = [pytest.mark.postgres, pytest.mark.slow,
              pytest.mark.timeout(600 + 20 * KILLS)]  # a restart is seconds on a busy CPU


@dataclass
class Submitted:
    id: str
    kind: str  # batch, gang, cpu, cancel


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    kill_job_processes(path)


def _job_body(kind: str, rng: random.Random) -> dict[str, Any]:
    sleep = f"{rng.uniform(0.5, 2.5):.1f}"
    if kind == "gang":
        return {"command": ["sh", "-c", f"{RUN}; sleep {sleep}"], "gpus": 2, "nodes": 2,
                "cpus": 0.1}
    if kind == "cpu":
        return {"command": ["sh", "-c", f"{RUN}; sleep {sleep}"], "gpus": 0, "cpus": 0.1}
    if kind == "cancel":  # runs far longer than it is allowed to: cancelled mid-way
        return {"command": ["sh", "-c", f"{RUN}; sleep 60"], "gpus": 1, "cpus": 0.1}
    return {"command": ["sh", "-c", f"{RUN}; sleep {sleep}"], "gpus": rng.choice([1, 1, 2, 4]),
            "cpus": 0.1}


class Workload(threading.Thread):
    """Submits jobs (and cancels the 'cancel' ones) until told to stop."""

    def __init__(self, api: Api, rng: random.Random) -> None:
        super().__init__(name="chaos-workload", daemon=True)
        self.api, self.rng = api, rng
        self.jobs: list[Submitted] = []
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        to_cancel: list[tuple[float, str]] = []
        try:
            while not self.done.is_set():
                kind = self.rng.choices(["batch", "gang", "cpu", "cancel"], [6, 2, 1, 1])[0]
                body = self.api.call("POST", "/v1/jobs", _job_body(kind, self.rng),
                                     key=str(uuid.uuid4()))
                self.jobs.append(Submitted(body["id"], kind))
                if kind == "cancel":
                    to_cancel.append((time.monotonic() + self.rng.uniform(0.5, 4), body["id"]))
                for due, job_id in [c for c in to_cancel if c[0] <= time.monotonic()]:
                    self.api.call("POST", f"/v1/jobs/{job_id}/cancel")
                    to_cancel.remove((due, job_id))
                self.done.wait(self.rng.uniform(0.1, 0.5))
            for _, job_id in to_cancel:
                self.api.call("POST", f"/v1/jobs/{job_id}/cancel")
        except BaseException as err:  # reported by the test's thread
            self.error = err


def _setup(api: Api) -> str:
    """Prices, a tenant with money, a user: returns the user's token."""
    for path, body in [
        ("/v1/prices", {"model": "H100", "gpu_hour": "3600", "cpu_core_hour": "36",
                        "memory_gib_hour": "0"}),
        ("/v1/tenants", {"name": "chaos"}),
        ("/v1/admin/topups", {"tenant": "chaos", "amount": "10000000", "ref": "chaos-1"}),
    ]:
        api.call("POST", path, body, key=str(uuid.uuid4()))
    user = api.call("POST", "/v1/users", {"name": "chaos-u", "tenant": "chaos"},
                    key=str(uuid.uuid4()))
    token: str = user["token"]
    return token


def test_chaos_kills_lose_nothing_and_do_nothing_twice(data_dir: Path, pg_url: str) -> None:
    rng = random.Random(SEED)
    print(f"\nchaos: seed {SEED}, {KILLS} kills (GPUCLOUD_CHAOS_SEED / GPUCLOUD_CHAOS_KILLS)")
    args = ("--simulate-gpus", "8xH100,8xH100", "--stop-grace-s", "1", "--database-url", pg_url)
    data_dir.mkdir(parents=True)
    replicas = [Replica(free_port(), data_dir, args, data_dir.parent / f"replica-{i}.log")
                for i in range(REPLICAS)]
    began = time.monotonic()
    replicas[0].start()
    wait_healthy(replicas[:1])  # the first start creates the schema and the operator token
    for replica in replicas[1:]:
        replica.start()
    admin = Api(replicas, (data_dir / "admin.token").read_text().strip(), rng)
    workload: Workload | None = None
    try:
        user = Api(replicas, _setup(admin), random.Random(SEED + 1))
        wait_healthy(replicas[1:])
        workload = Workload(user, random.Random(SEED + 2))
        workload.start()
        kills = _kill_and_restart(replicas, rng, workload)
        workload.done.set()
        workload.join(120)
        assert workload.error is None, workload.error
        chaos_s = time.monotonic() - began
        for replica in replicas:
            wait_healthy([replica])
        jobs = workload.jobs
        finals = _wait_all_ended(admin, jobs)
        _wait_metered(pg_url, jobs)
        report = admin.call("GET", "/v1/admin/ledger/verify")
        usage = user.call("GET", "/v1/usage")
    finally:
        if workload is not None:
            workload.done.set()
        for replica in replicas:
            replica.stop()

    assert [r.exits for r in replicas] == [0] * REPLICAS, "a replica exited by itself"
    mischarged = _check(pg_url, data_dir, jobs, finals, usage)
    fenced = sum(r.log.read_text(errors="replace").count("may no longer write") for r in replicas)
    with Session(create_engine(pg_url)) as session:
        lease = session.get(LeaderLease, "controllers")
        leaders = lease.token if lease is not None else 0
    by_kind = Counter(f"{j.kind}:{finals[j.id]}" for j in jobs)
    print(f"chaos: survived {sum(kills.values())} kills ({kills['healthy']} of serving "
          f"replicas, {kills['starting']} while starting) in {chaos_s:.0f} s; "
          f"{leaders} leader terms; {fenced} stale controller writes refused by the fence; "
          f"{admin.resends + user.resends} calls resent")
    print(f"chaos: {len(jobs)} jobs: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
    print("chaos: held: one terminal state per job, no run twice, no device held twice")
    print(f"chaos: every running second charged once: {len(mischarged)} allocations differ"
          + "".join(f"\n  {line}" for line in mischarged[:20]))
    print(f"chaos: ledger verify: ok={report['ok']} ({report['transactions']} transactions)")
    assert report["ok"], report["violations"]
    assert not mischarged, mischarged


def _kill_and_restart(replicas: list[Replica], rng: random.Random,
                      workload: Workload) -> Counter[str]:
    kills: Counter[str] = Counter()
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.2, 1.0))
        victim = rng.choice([r for r in replicas if r.alive()])
        if victim.healthy():
            # Not the last serving replica: the API stays up and the work moves on (a process
            # still starting is killed at once: mid-import, mid-migration or mid-bootstrap).
            wait_healthy([r for r in replicas if r is not victim])
            kills["healthy"] += 1
        else:
            kills["starting"] += 1
        victim.kill9()
        victim.start()
        assert workload.error is None, workload.error
        done = sum(kills.values())
        if done % 25 == 0:
            print(f"chaos: {done} kills, {len(workload.jobs)} jobs submitted", flush=True)
    return kills


def _wait_all_ended(api: Api, jobs: list[Submitted], timeout_s: float = 180) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {j.id: api.call("GET", f"/v1/jobs/{j.id}")["state"] for j in jobs}
        if all(s in TERMINAL for s in states.values()):
            return states
        time.sleep(1)
    open_jobs = {k: v for k, v in states.items() if v not in TERMINAL}
    raise AssertionError(f"jobs still not ended: {open_jobs}")


def _charged(session: Session, allocation: Allocation) -> int:
    meter = session.get(AllocationMeter, allocation.id)
    return meter.metered_seconds if meter is not None else 0


def _expected_seconds(allocation: Allocation) -> int:
    if allocation.started_at is None or allocation.released_at is None:
        return 0
    return int((allocation.released_at - allocation.started_at).total_seconds())


def _wait_metered(pg_url: str, jobs: list[Submitted], timeout_s: float = 30) -> None:
    """The meter closes an allocation on the pass after its job ended."""
    engine = create_engine(pg_url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with Session(engine) as session:
                rows = session.scalars(select(Allocation)).all()
                if all(_charged(session, a) == _expected_seconds(a) for a in rows):
                    return
            time.sleep(0.5)
    finally:
        engine.dispose()


def _check(pg_url: str, data_dir: Path, jobs: list[Submitted], finals: dict[str, str],
           usage: list[dict[str, Any]]) -> list[str]:
    """Asserts the job and device invariants; returns the allocations charged wrongly."""
    engine = create_engine(pg_url)
    with Session(engine) as session:
        allocations = session.scalars(select(Allocation).order_by(Allocation.created_at)).all()
        rows = {j.id: j for j in session.scalars(select(Job))}
        events = session.scalars(
            select(Event).where(Event.object_kind == "job").order_by(Event.id)).all()
    engine.dispose()
    by_job: dict[str, list[Allocation]] = defaultdict(list)
    for allocation in allocations:
        by_job[allocation.job_id].append(allocation)
    timeline: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        timeline[event.object_id].append(event)

    for job in jobs:
        row = rows[job.id]
        want = "CANCELLED" if job.kind == "cancel" else "SUCCEEDED"
        assert finals[job.id] == want == row.state, (job, row.state, row.message)
        # Exactly one terminal state, and nothing after it.
        states = [e.after for e in timeline[job.id] if e.kind == "job.state"]
        ends = [i for i, s in enumerate(states) if s in TERMINAL]
        assert len(ends) == 1 and ends[0] == len(states) - 1, (job, states)
        # Ran once: one line per replica of its one placement, attempt 0.
        assert row.restart_count == 0, (job, row.restart_count, row.message)
        runs_file = data_dir / "jobs" / job.id / "checkpoint" / "runs"
        lines = runs_file.read_text().split() if runs_file.exists() else []
        runs = Counter(zip(lines[::2], lines[1::2], strict=True))
        mine = {a.id for a in by_job[job.id]}
        assert all(n == 1 for n in runs.values()), f"{job} ran twice: {runs}"
        assert {a for a, _ in runs} <= mine and all(attempt == "0" for _, attempt in runs)
        if want == "SUCCEEDED":
            assert {a for a, _ in runs} == mine, (job, runs, mine)
            nodes = 2 if job.kind == "gang" else 1
            assert len(mine) == nodes, (job, mine)
        for allocation in by_job[job.id]:
            assert not allocation.active
            if allocation.started_at is not None:
                assert allocation.released_at == row.ended_at, (job, allocation.id)

    _no_device_twice(allocations)
    # Every running second charged once: the tenant's usage per allocation is its run time.
    charged: Counter[str] = Counter()
    for line in usage:
        if line["allocation_id"] is not None:
            charged[line["allocation_id"]] += line["seconds"]
    return [f"{a.job_id}/{a.id}: charged {charged[a.id]} s, ran {_expected_seconds(a)} s"
            for a in allocations if charged[a.id] != _expected_seconds(a)]


def _no_device_twice(allocations: Any) -> None:
    held: dict[str, list[tuple[datetime, datetime | None, str]]] = defaultdict(list)
    for allocation in allocations:
        for device in allocation.device_ids:
            held[device].append((allocation.created_at, allocation.released_at, allocation.id))
    for device, spans in held.items():
        spans.sort()
        for (_, released, first), (created, _, second) in itertools.pairwise(spans):
            assert released is not None and released <= created, (
                f"device {device} held by {first} and {second} at once")
