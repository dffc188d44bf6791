"""A two-node fleet through the real CLI: a gang job on both nodes, and quarantine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Cloud, wait_for
from tests.servers import free_port, kill_job_processes, start_server


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    base = tmp_path_factory.mktemp("fleet")
    data_dir = base / "data"
    server = start_server(data_dir, free_port(), "--simulate-gpus", "2xH100,2xH100")
    home = base / "home"
    home.mkdir()
    try:
        yield Cloud(server.url, server.token, data_dir, home)
    finally:
        server.stop()
        kill_job_processes(data_dir)


def test_a_job_on_two_nodes_runs_once_on_each_with_its_rank(fleet: Cloud) -> None:
    script = ('echo "$NODE_RANK $NNODES $WORLD_SIZE $MASTER_ADDR:$MASTER_PORT '
              '$CUDA_VISIBLE_DEVICES" > "$GPUCLOUD_CHECKPOINT_DIR/rank-$NODE_RANK"')
    job = fleet.json("run", "--nodes", "2", "--gpus-per-node", "2", "--wait", "--",
                     "sh", "-c", script)
    assert job["state"] == "SUCCEEDED" and job["nodes"] == 2 and job["gpus"] == 2
    checkpoints = fleet.data_dir / "jobs" / job["id"] / "checkpoint"
    lines = sorted((checkpoints / f"rank-{r}").read_text().split() for r in range(2))
    port = lines[0][3].split(":")[1]
    assert lines == [["0", "2", "4", f"127.0.0.1:{port}", "0,1"],
                     ["1", "2", "4", f"127.0.0.1:{port}", "0,1"]]
    shown = fleet.ok("show", job["id"])
    assert "2 nodes, each with 2 GPU" in shown
    refused = fleet.cli("run", "--nodes", "3", "--gpus", "1", "--", "true")
    assert refused.returncode != 0
    assert "3 needed" in refused.stderr and "can never fit" in refused.stderr


def test_a_quarantined_node_is_shown_and_skipped_until_returned(fleet: Cloud) -> None:
    out = fleet.ok("node", "quarantine", "local-1", "--reason", "ECC errors")
    assert "node local-1 quarantined: ECC errors" in out
    nodes = {n["id"]: n for n in fleet.json("nodes")}
    assert nodes["local-1"]["quarantined"] and not nodes["local-0"]["quarantined"]
    assert "QUARANTINED" in fleet.ok("nodes")
    gang = fleet.json("run", "--nodes", "2", "--gpus", "1", "--", "true")
    waiting = wait_for(
        lambda: (j := fleet.job(gang["id"]))["reason"] == "WAITING_FOR_RESOURCES" and j,
        "the gang to wait for the quarantined node")
    assert waiting["state"] == "QUEUED"
    assert "in service" in fleet.ok("node", "return", "local-1")
    assert fleet.wait_state(gang["id"], "SUCCEEDED")["state"] == "SUCCEEDED"
    member = fleet.cli("node", "quarantine", "local-0", "--reason", "x",
                       token="gpc_not-a-real-token")
    assert member.returncode != 0
