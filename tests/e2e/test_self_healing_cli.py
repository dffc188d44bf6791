"""The signature promise, end to end with real processes: a training job hit by a GPU fault
is back on healthy hardware from its last checkpoint with nobody involved, no checkpointed
step is redone, and the operator sees the story."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cloud, wait_for
from tests.servers import free_port, kill_job_processes, start_server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_resumable.py"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    base = tmp_path_factory.mktemp("healing")
    data_dir = base / "data"
    server = start_server(data_dir, free_port(), "--simulate-gpus", "2xH100,2xH100",
                          "--stop-grace-s", "2")
    home = base / "home"
    home.mkdir()
    cloud = Cloud(server.url, server.token, data_dir, home)
    try:
        cloud.ok("admin", "config", "set", "health.burn_in_seconds", "3")
        yield cloud
    finally:
        server.stop()
        kill_job_processes(data_dir)


def steps(cloud: Cloud, job_id: str) -> list[tuple[int, int]]:
    log = cloud.data_dir / "jobs" / job_id / "checkpoint" / "steps.log"
    if not log.exists():
        return []
    return [(int(a), int(b)) for a, b in (line.split() for line in log.read_text().split("\n")
                                          if line)]


def test_a_fault_mid_training_restarts_from_the_checkpoint(fleet: Cloud) -> None:
    job = fleet.json("run", "--gpus", "2", "--max-duration", "10m", "--", sys.executable,
                     str(EXAMPLE), "--steps", "200", "--every", "5", "--step-seconds", "0.05")
    job_id = job["id"]
    wait_for(lambda: len(steps(fleet, job_id)) >= 17, "the job to pass a few checkpoints")
    node = fleet.job(job_id)["node_id"]
    out = fleet.ok("debug", "inject-fault", node, "--gpu", "0", "--xid", "79")
    assert f"injected Xid 79 on {node} GPU 0" in out
    done = fleet.wait_state(job_id, "SUCCEEDED", "FAILED", timeout=120)
    assert done["state"] == "SUCCEEDED" and done["restart_count"] == 1

    ran = steps(fleet, job_id)
    first = [s for r, s in ran if r == 0]
    second = [s for r, s in ran if r == 1]
    checkpointed = max(s for s in first if (s + 1) % 5 == 0)
    assert second[0] <= checkpointed + 1, "it skipped steps"
    assert second[0] == checkpointed + 1 or second[0] > checkpointed, (
        "a checkpointed step was redone")
    assert sorted(set(first) | set(second)) == list(range(200))

    shown = fleet.ok("show", job_id)
    assert "Xid 79: GPU has fallen off the bus" in shown
    assert "restart 1 after a platform fault, from its checkpoint at step" in shown
    nodes = {n["id"]: n for n in fleet.json("nodes")}
    assert nodes[node]["faults"][0]["description"] == "Xid 79: GPU has fallen off the bus"
    feed = fleet.json("faults", "--node", node)
    assert feed[0]["action"] == "drain-node" and job_id in feed[0]["job_ids"]
    # the node passes its (simulated) burn-in and returns by itself
    wait_for(lambda: not {n["id"]: n for n in fleet.json("nodes")}[node]["quarantined"],
             "the node to return after its burn-in", timeout=60)


def test_drills_need_an_operator_and_a_valid_fault(fleet: Cloud) -> None:
    bad = fleet.cli("debug", "inject-fault", "local-0", "--xid", "79", "--ecc")
    assert bad.returncode != 0 and "choose one of" in bad.stderr
    missing = fleet.cli("debug", "inject-fault", "nope", "--ecc")
    assert missing.returncode != 0 and "nope" in missing.stderr
    policy = fleet.json("admin", "xid-policy", "show")
    assert policy["policy"]["79"]["action"] == "drain-node" and policy["default"]
