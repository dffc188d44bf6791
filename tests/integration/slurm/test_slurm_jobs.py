"""gpucloud on a real Slurm cluster, end to end through the CLI: jobs, gangs, cancel, queueing,
node faults, a slurmctld restart, quarantine as Slurm drains, and billing."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cloud, wait_for
from tests.integration.slurm.cluster import GPUS_PER_NODE, NODES, SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def gated(gate: Path, before: str = "echo started", after: str = "") -> str:
    wait = f"i=0; while [ ! -e '{gate}' ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"
    return "; ".join(part for part in (before, wait, after) if part)


def run_wait(cloud: Cloud, *args: str, token: str | None = None) -> dict[str, Any]:
    """``gpucloud run --wait --json ARGS``: the ended job (the exit status is the job's)."""
    cut = args.index("--")
    result = cloud.cli("run", "--wait", "--json", *args[:cut], *args[cut:], token=token)
    assert result.stdout.strip(), result.stderr
    job: dict[str, Any] = json.loads(result.stdout)
    return job


def slurm_job_of(slurm: SlurmCluster, job_id: str) -> dict[str, Any]:
    """The Slurm job of gpucloud's job (its comment carries the gpucloud ids)."""
    def find() -> dict[str, Any] | None:
        return next((j for j in slurm.jobs() if f"job={job_id} " in j.get("comment", "")), None)

    return wait_for(find, f"the Slurm job of {job_id}", timeout=30)


def test_a_job_runs_in_slurm_with_its_gpus_and_reports_its_exit_code(
        cloud: Cloud, slurm: SlurmCluster) -> None:
    script = ('echo "gpus=$CUDA_VISIBLE_DEVICES node=$SLURMD_NODENAME rank=$NODE_RANK '
              'ckpt=$GPUCLOUD_CHECKPOINT_DIR"; exit 3')
    job = run_wait(cloud, "--gpus", "2", "--", "sh", "-c", script)
    assert (job["state"], job["reason"], job["exit_code"]) == ("FAILED", "EXIT_NONZERO", 3)
    out = cloud.ok("logs", job["id"])
    assert "gpus=0,1 node=gpu-node-" in out and "rank=0" in out
    assert f"ckpt={cloud.data_dir / 'slurm' / 'jobs' / job['id'] / 'checkpoint'}" in out
    ran = slurm_job_of(slurm, job["id"])
    assert ran["job_state"] == "FAILED" and ran["exit_code"] == 3 << 8
    assert ran["requeue"] is False  # --no-requeue: gpucloud decides what runs again
    assert ran["tres_per_node"] == "gres:gpu:h100:2"
    assert ran["required_nodes"] == ran["nodes"]  # pinned where gpucloud placed it
    ok = run_wait(cloud, "--gpus", "1", "--", "true")
    assert (ok["state"], ok["exit_code"]) == ("SUCCEEDED", 0)


def test_nodes_are_slurm_s_with_their_gpus_and_topology(cloud: Cloud, slurm: SlurmCluster) -> None:
    slurm.scontrol("update", "nodename=gpu-node-1", "availablefeatures=rack:r1,leaf_switch=s1",
                   "activefeatures=rack:r1,leaf_switch=s1")
    try:
        def labelled() -> dict[str, Any] | None:
            nodes = {n["id"]: n for n in cloud.json("nodes")}
            return nodes if nodes["gpu-node-1"]["labels"] else None

        nodes = wait_for(labelled, "the features to become labels", timeout=30)
        assert sorted(nodes) == slurm.nodes
        node = nodes["gpu-node-1"]
        assert node["engine"] == "slurm" and node["health"] == "healthy"
        assert node["labels"] == {"rack": "r1", "leaf_switch": "s1"}
        assert node["cpus"] == 32 and node["memory_mib"] == 65536
        assert [d["model"] for d in node["devices"]] == ["H100"] * GPUS_PER_NODE
    finally:
        slurm.scontrol("update", "nodename=gpu-node-1", "availablefeatures=",
                       "activefeatures=")


RANK_LINE = ('echo "$SLURMD_NODENAME $NODE_RANK $NNODES $WORLD_SIZE $MASTER_ADDR:$MASTER_PORT '
             '$CUDA_VISIBLE_DEVICES $SLURM_JOB_ID" > "$GPUCLOUD_CHECKPOINT_DIR/rank-$NODE_RANK"')


def rank_lines(cloud: Cloud, job_id: str, ranks: int) -> list[list[str]]:
    checkpoints = cloud.data_dir / "slurm" / "jobs" / job_id / "checkpoint"
    return [(checkpoints / f"rank-{rank}").read_text().split() for rank in range(ranks)]


def test_a_two_node_job_gets_each_rank_s_environment_on_its_node(cloud: Cloud) -> None:
    job = run_wait(cloud, "--nodes", "2", "--gpus-per-node", str(GPUS_PER_NODE), "--",
                   "sh", "-c", RANK_LINE)
    assert job["state"] == "SUCCEEDED" and job["nodes"] == 2
    lines = rank_lines(cloud, job["id"], 2)
    nodes = [line[0] for line in lines]
    assert len(set(nodes)) == 2 and all(n.startswith("gpu-node-") for n in nodes)
    assert [line[1] for line in lines] == ["0", "1"]
    assert {tuple(line[2:4]) for line in lines} == {("2", str(2 * GPUS_PER_NODE))}
    assert len({line[4] for line in lines}) == 1 and lines[0][4].startswith("127.0.0.1:")
    every_gpu = ",".join(str(i) for i in range(GPUS_PER_NODE))
    assert {line[5] for line in lines} == {every_gpu}  # Slurm's own CUDA_VISIBLE_DEVICES
    assert len({line[6] for line in lines}) == 1  # one Slurm job for the whole gang


def test_a_small_multi_node_job_still_gets_a_node_per_rank(cloud: Cloud) -> None:
    """Two 2-GPU ranks would fit on one node; a multi-node job's ranks each get their own
    (one Slurm job), each with the GPUs Slurm gave it there."""
    job = run_wait(cloud, "--nodes", "2", "--gpus-per-node", "2", "--", "sh", "-c", RANK_LINE)
    assert job["state"] == "SUCCEEDED"
    lines = rank_lines(cloud, job["id"], 2)
    assert [line[1] for line in lines] == ["0", "1"]
    assert len({line[0] for line in lines}) == 2
    assert all(len(line[5].split(",")) == 2 for line in lines)
    assert len({line[6] for line in lines}) == 1


def test_a_failing_rank_ends_the_gang_with_its_code(cloud: Cloud) -> None:
    script = 'if [ "$NODE_RANK" = 1 ]; then exit 7; fi; sleep 60'
    job = run_wait(cloud, "--nodes", "2", "--gpus-per-node", "1", "--",
                     "sh", "-c", script)
    assert (job["state"], job["exit_code"]) == ("FAILED", 7)


def test_cancel_stops_the_slurm_job(cloud: Cloud, slurm: SlurmCluster, gate: Path) -> None:
    job_id = cloud.json("run", "--gpus", "1", "--", "sh", "-c", gated(gate))["id"]
    cloud.wait_state(job_id, "RUNNING")
    cloud.ok("cancel", job_id)
    job = cloud.wait_state(job_id, "CANCELLED", "FAILED", "SUCCEEDED")
    assert (job["state"], job["exit_code"]) == ("CANCELLED", 143)  # SIGTERM reached the command
    ran = slurm_job_of(slurm, job_id)
    assert ran["job_state"] != "RUNNING"


def test_gpucloud_queues_what_does_not_fit_and_slurm_never_sees_it(
        cloud: Cloud, slurm: SlurmCluster, gate: Path) -> None:
    full = [cloud.json("run", "--gpus", str(GPUS_PER_NODE), "--", "sh", "-c", gated(gate))["id"]
            for _ in range(NODES)]
    for job_id in full:
        cloud.wait_state(job_id, "RUNNING")
    extra = cloud.json("run", "--gpus", "1", "--", "true")["id"]
    waiting = wait_for(lambda: (j := cloud.job(extra))["reason"] == "WAITING_FOR_RESOURCES" and j,
                       "the extra job to wait for GPUs")
    assert waiting["state"] == "QUEUED"
    assert not [j for j in slurm.jobs() if f"job={extra} " in j.get("comment", "")]
    gate.touch()
    assert cloud.wait_state(extra, "SUCCEEDED", "FAILED")["state"] == "SUCCEEDED"
    for job_id in full:
        assert cloud.wait_state(job_id, "SUCCEEDED", "FAILED")["state"] == "SUCCEEDED"


def test_a_node_set_down_under_a_job_is_a_platform_fault_and_it_restarts_elsewhere(
        cloud: Cloud, slurm: SlurmCluster, gate: Path) -> None:
    """Slurm ends the job NODE_FAIL (it was submitted --no-requeue); gpucloud sees a platform
    fault, not the job's failure, and its self-healing runs the job again on another node, as
    a new Slurm job."""
    job_id = cloud.json("run", "--gpus", "4", "--", "sh", "-c",
                        gated(gate, before='echo "attempt $GPUCLOUD_RESTART_COUNT"'))["id"]
    node = cloud.wait_state(job_id, "RUNNING")["node_id"]
    first = slurm_job_of(slurm, job_id)
    slurm.scontrol("update", f"nodename={node}", "state=down", "reason=xid79")
    wait_for(lambda: slurm.job(first["job_id"])["job_state"] == "NODE_FAIL",
             "Slurm to end the job NODE_FAIL", timeout=30)
    again = wait_for(lambda: (j := cloud.job(job_id))["restart_count"] == 1
                     and j["state"] == "RUNNING" and j, "the job to run again", timeout=60)
    assert again["node_id"] != node
    with cloud.sdk() as api:
        messages = [e.message for e in api.job_events(job_id)]
    assert any("after a platform fault" in m for m in messages), messages
    attempts = [j for j in slurm.jobs() if f"job={job_id} " in j["comment"]]
    assert sorted(j["job_state"] for j in attempts) == ["NODE_FAIL", "RUNNING"]

    def unhealthy() -> dict[str, Any] | None:
        found: dict[str, Any] = next(n for n in cloud.json("nodes") if n["id"] == node)
        return found if found["health"] != "healthy" else None

    shown = wait_for(unhealthy, f"{node} to be unhealthy in gpucloud", timeout=30)
    assert "down" in shown["health_message"] and "xid79" in shown["health_message"]
    gate.touch()
    assert cloud.wait_state(job_id, "SUCCEEDED", "FAILED")["state"] == "SUCCEEDED"
    assert "attempt 1" in cloud.ok("logs", job_id)


def test_jobs_are_still_tracked_across_a_slurmctld_restart(
        cloud: Cloud, slurm: SlurmCluster, gate: Path) -> None:
    job_id = cloud.json("run", "--gpus", "1", "--", "sh", "-c", gated(gate, after="exit 4"))["id"]
    cloud.wait_state(job_id, "RUNNING")
    slurm.restart_slurmctld()
    assert cloud.job(job_id)["state"] == "RUNNING"
    gate.touch()
    job = cloud.wait_state(job_id, "FAILED", "SUCCEEDED", "CANCELLED")
    assert (job["state"], job["exit_code"]) == ("FAILED", 4)
    after = run_wait(cloud, "--gpus", "1", "--", "true")
    assert after["state"] == "SUCCEEDED"


def test_quarantine_drains_the_node_in_slurm_and_return_resumes_it(
        cloud: Cloud, slurm: SlurmCluster) -> None:
    cloud.ok("node", "quarantine", "gpu-node-3", "--reason", "ECC errors")
    drained = wait_for(lambda: (n := slurm.node("gpu-node-3"))["reason"] and n,
                       "Slurm to drain gpu-node-3", timeout=30)
    assert "DRAIN" in drained["state_flags"] and drained["reason"] == "gpucloud: ECC errors"
    shown = next(n for n in cloud.json("nodes") if n["id"] == "gpu-node-3")
    assert shown["quarantined"] and shown["health"] == "healthy"  # gpucloud's own drain
    cloud.ok("node", "return", "gpu-node-3")
    wait_for(lambda: "DRAIN" not in slurm.node("gpu-node-3")["state_flags"],
             "Slurm to resume gpu-node-3", timeout=30)

    # An operator's drain in Slurm: unhealthy in gpucloud, and never undone by it.
    slurm.scontrol("update", "nodename=gpu-node-2", "state=drain", "reason=bad fan")

    def unhealthy() -> dict[str, Any] | None:
        found: dict[str, Any] = next(n for n in cloud.json("nodes") if n["id"] == "gpu-node-2")
        return found if found["health"] != "healthy" else None

    shown = wait_for(unhealthy, "gpu-node-2 to be unhealthy", timeout=30)
    assert "drained outside gpucloud" in shown["health_message"]
    assert "bad fan" in shown["health_message"]
    assert "DRAIN" in slurm.node("gpu-node-2")["state_flags"]


def test_metering_and_stop_at_zero_are_the_same_on_slurm(cloud: Cloud) -> None:
    with cloud.sdk() as api:
        api.set_price("H100", "3600", cpu_core_hour="0", memory_gib_hour="0")  # 1.00 a second
        api.set_config("billing.admission_runway_seconds", "2")
        api.create_tenant("slurm-payer")
        user = api.create_user("slurm-payer-user", tenant="slurm-payer")
        api.topup("slurm-payer", "4")
    job = run_wait(cloud, "--gpus", "1", "--gpu-type", "H100", "--cpus", "0.1",
                   "--", "sleep", "300", token=user.token)
    assert (job["state"], job["reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")

    def settled() -> dict[str, Any] | None:
        wallet: dict[str, Any] = cloud.json("wallet", token=user.token)
        return wallet if not wallet["running_allocations"] else None

    wallet = wait_for(settled, "the meter to close")
    usage = [u for u in cloud.json("usage", token=user.token) if u["job_id"] == job["id"]]
    assert len(usage) == 1 and usage[0]["gpu_model"] == "H100" and usage[0]["seconds"] >= 1
    assert Decimal(usage[0]["cost"]) == Decimal(usage[0]["seconds"])  # 1.00 per GPU-second
    # Stopped when the money ran out: at most a metering interval or so of debt.
    assert Decimal("-2") <= Decimal(wallet["balance"]) <= Decimal("4")
    assert json.loads(cloud.ok("admin", "ledger", "verify", "--json"))["ok"] is True
