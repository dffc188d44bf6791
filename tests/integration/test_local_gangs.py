"""Multi-node launches on the local engine, with real processes: every rank runs, and when one
fails the others are stopped instead of hanging on a collective that can never complete."""

from __future__ import annotations

import time
from pathlib import Path

from gpucloud.engines.base import LaunchSpec, ReplicaSpec, RunPhase
from gpucloud.engines.discovery import simulated_nodes
from gpucloud.engines.local import LocalEngine
from tests.integration.test_local_engine import exited_with, output, sh, wait_ended

NODES = simulated_nodes("2xH100,2xH100", cpu_milli=4000, memory_mib=8192)


def gang(script: str, job: str = "job_g") -> LaunchSpec:
    replicas = [
        ReplicaSpec(f"alc_{job}_{rank}", f"local-{rank}", rank, [0, 1],
                    {"NODE_RANK": str(rank)}, 1000, 1024)
        for rank in range(2)
    ]
    return LaunchSpec(job, sh(script), replicas)


def test_every_rank_runs_with_its_own_environment(tmp_path: Path) -> None:
    engine = LocalEngine(tmp_path, NODES)
    assert [n.id for n in engine.nodes()] == ["local-0", "local-1"]
    spec = gang('echo "rank $NODE_RANK"; exit 0')
    ref = engine.launch(spec)
    assert ref == spec.launch_id
    assert exited_with(wait_ended(engine, ref)) == 0
    assert output(engine, ref) == "rank 0\n"  # logs are rank 0's
    other = b"".join(engine.logs(spec.replicas[1].allocation_id)).decode()
    assert other == "rank 1\n"
    assert engine.launch(spec) == ref  # idempotent: nothing runs twice
    time.sleep(0.3)
    assert output(engine, ref) == "rank 0\n"


def test_one_rank_failing_stops_the_others_and_its_code_is_reported(tmp_path: Path) -> None:
    engine = LocalEngine(tmp_path, NODES, teardown_grace_s=0.5)
    # Rank 1 fails at once; rank 0 would wait forever for it (and ignores SIGTERM).
    ref = engine.launch(gang("""
        if [ "$NODE_RANK" = 1 ]; then sleep 0.2; exit 7; fi
        trap '' TERM; while true; do sleep 0.1; done
    """, job="job_f"))
    status = wait_ended(engine, ref, timeout=20)
    assert exited_with(status) == 7
    assert status.phase is RunPhase.EXITED


def test_stop_reaches_every_rank(tmp_path: Path) -> None:
    engine = LocalEngine(tmp_path, NODES)
    ref = engine.launch(gang("echo up; sleep 60", job="job_s"))
    time.sleep(0.3)
    assert engine.status([ref])[ref].phase is RunPhase.RUNNING
    engine.stop(ref)
    assert exited_with(wait_ended(engine, ref)) == 143
