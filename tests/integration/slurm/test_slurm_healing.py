"""Self-healing on Slurm: drills travel the same path as real faults, the training example
comes back on another node from its checkpoint, and the drilled node returns by itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Cloud, wait_for
from tests.integration.slurm.cluster import SlurmCluster
from tests.integration.slurm.conftest import restore_fleet

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "train_resumable.py"


def steps(cloud: Cloud, job_id: str) -> list[tuple[int, int]]:
    log = cloud.data_dir / "slurm" / "jobs" / job_id / "checkpoint" / "steps.log"
    if not log.exists():
        return []
    return [(int(a), int(b)) for a, b in (line.split() for line in log.read_text().splitlines()
                                          if line)]


@pytest.mark.parametrize("fault", [["--gpu", "0", "--xid", "79"], ["--heartbeat-loss",
                                                                    "--duration", "4"]])
def test_a_faulted_training_job_resumes_from_its_checkpoint(
        slurm: SlurmCluster, slurm_cloud: Cloud, fault: list[str]) -> None:
    cloud = slurm_cloud
    cloud.ok("admin", "config", "set", "health.burn_in_seconds", "2")
    try:
        job_id = cloud.json("run", "--gpus", "1", "--max-duration", "10m", "--",
                            sys.executable, str(EXAMPLE), "--steps", "120", "--every", "5",
                            "--step-seconds", "0.05")["id"]
        wait_for(lambda: len(steps(cloud, job_id)) >= 12, "a few checkpoints")
        node = cloud.job(job_id)["node_id"]
        cloud.ok("debug", "inject-fault", node, *fault)
        done = cloud.wait_state(job_id, "SUCCEEDED", "FAILED", timeout=120)
        assert (done["state"], done["restart_count"]) == ("SUCCEEDED", 1)
        ran = steps(cloud, job_id)
        first = [s for r, s in ran if r == 0]
        checkpointed = max(s for s in first if (s + 1) % 5 == 0)
        again = [s for r, s in ran if r == 1]
        assert again[0] == checkpointed + 1 or again[0] > checkpointed  # nothing redone
        assert sorted(set(first) | set(again)) == list(range(120))
        assert "restart 1 after a platform fault" in cloud.ok("show", job_id)
        wait_for(lambda: not {n["id"]: n for n in cloud.json("nodes")}[node]["quarantined"],
                 "the node to pass its burn-in and return", timeout=90)
    finally:
        restore_fleet(cloud, slurm)
