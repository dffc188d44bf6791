"""Crash recovery on Slurm: a gpucloud killed with SIGKILL re-adopts its Slurm jobs; the engine
never submits a launch twice, finds a job whose id was never written, and says when Slurm lost
one. Also the slurmrestd API, through a second gpucloud."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from gpucloud.core.runs import RunPhase
from gpucloud.engines.base import LaunchSpec, ReplicaSpec
from gpucloud.engines.slurm.cli import CliApi
from gpucloud.engines.slurm.engine import SlurmEngine
from tests.e2e.conftest import Cloud, wait_for
from tests.integration.slurm.cluster import SlurmCluster, start_cloud
from tests.integration.slurm.test_slurm_jobs import gated, run_wait, slurm_job_of

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cloud(server_url: str, token: str, data_dir: Path, home: Path) -> Cloud:
    home.mkdir(exist_ok=True)
    return Cloud(server_url, token, data_dir, home)


def test_a_restarted_control_plane_re_adopts_its_slurm_jobs(
        slurm: SlurmCluster, tmp_path: Path, slurm_cloud: Cloud) -> None:
    """kill -9 gpucloud: one job runs on, one ends while gpucloud is down; after the restart
    the first is still RUNNING and later records its real exit code, the second reports its
    code and the time it really ended."""
    data = tmp_path / "data"
    server = start_cloud(data, slurm, "--stop-grace-s", "2")
    runs_on, ends_early = tmp_path / "gate-1", tmp_path / "gate-2"
    try:
        cloud = _cloud(server.url, wait_for(lambda: server.token, "token"), data, tmp_path / "h")
        first = cloud.json("run", "--gpus", "1", "--", "sh", "-c",
                           gated(runs_on, after="exit 6"))["id"]
        second = cloud.json("run", "--gpus", "1", "--", "sh", "-c",
                            gated(ends_early, after="exit 5"))["id"]
        cloud.wait_state(first, "RUNNING")
        cloud.wait_state(second, "RUNNING")
        server.kill9()
        ends_early.touch()
        slurm_id = slurm_job_of(slurm, second)["job_id"]
        wait_for(lambda: slurm.job(slurm_id)["job_state"] == "FAILED", "the job to end in Slurm")
        down_until = datetime.now().astimezone()

        server = start_cloud(data, slurm, "--stop-grace-s", "2")
        cloud = _cloud(server.url, server.token, data, tmp_path / "h")
        assert cloud.job(first)["state"] == "RUNNING"
        ended = cloud.wait_state(second, "FAILED", "SUCCEEDED")
        assert ended["exit_code"] == 5
        assert datetime.fromisoformat(ended["ended_at"]) <= down_until  # not the restart time
        runs_on.touch()
        job = cloud.wait_state(first, "FAILED", "SUCCEEDED", "CANCELLED")
        assert (job["state"], job["exit_code"]) == ("FAILED", 6)
        # Exactly one Slurm job per gpucloud job: nothing was submitted twice.
        for job_id in (first, second):
            assert len([j for j in slurm.jobs() if f"job={job_id} " in j["comment"]]) == 1
    finally:
        runs_on.touch()
        ends_early.touch()
        server.stop()


def spec(launch: str, node: str, script: str) -> LaunchSpec:
    return LaunchSpec(f"job_{launch}", ["sh", "-c", script],
                      [ReplicaSpec(launch, node, 0, [0], {"X": "1"}, 1000, 1024)])


def test_a_launch_is_submitted_once_even_when_its_job_id_was_never_written(
        slurm: SlurmCluster, tmp_path: Path) -> None:
    engine = SlurmEngine(CliApi(Path(slurm.conf)), tmp_path)
    engine.nodes()
    launch = spec("alc_twice", "gpu-node-0", "sleep 1; exit 2")
    ref = engine.launch(launch)
    assert engine.launch(launch) == ref
    run_dir = tmp_path / "runs" / ref
    (run_dir / "slurm_job_id").unlink()  # as if the control plane died right after sbatch
    again = SlurmEngine(CliApi(Path(slurm.conf)), tmp_path)
    assert again.launch(launch) == ref
    named = [j for j in slurm.jobs() if j["name"] == f"gpucloud-{ref}"]
    assert len(named) == 1
    assert int((run_dir / "slurm_job_id").read_text()) == named[0]["job_id"]

    def ended() -> bool:
        return again.status([ref])[ref].phase is RunPhase.EXITED

    wait_for(ended, "the launch to end")
    status = again.status([ref])[ref]
    assert status.exit_code == 2 and not status.platform_fault


def test_a_job_slurm_no_longer_knows_is_lost_with_a_reason(
        slurm: SlurmCluster, tmp_path: Path) -> None:
    engine = SlurmEngine(CliApi(Path(slurm.conf)), tmp_path)
    run_dir = tmp_path / "runs" / "alc_gone"
    run_dir.mkdir(parents=True)
    (run_dir / "slurm_job_id").write_text("987654\n")
    status = engine.status(["alc_gone"])["alc_gone"]
    assert status.phase is RunPhase.LOST
    assert "Slurm no longer knows Slurm job 987654" in status.message
    assert engine.status(["alc_never"])["alc_never"].phase is RunPhase.LOST


def test_a_pending_slurm_job_is_pending_and_a_stop_cancels_it(
        slurm: SlurmCluster, tmp_path: Path) -> None:
    """A job Slurm cannot start yet (here: held) is PENDING in gpucloud, not RUNNING."""
    engine = SlurmEngine(CliApi(Path(slurm.conf)), tmp_path)
    engine.nodes()
    ref = engine.launch(spec("alc_held", "gpu-node-1", "true"))
    job_id = int((tmp_path / "runs" / ref / "slurm_job_id").read_text())
    slurm.scontrol("hold", str(job_id))
    engine.snapshot_max_age_s = 0
    assert engine.status([ref])[ref].phase is RunPhase.PENDING
    engine.stop(ref)
    wait_for(lambda: slurm.job(job_id)["job_state"] == "CANCELLED", "the held job to be cancelled")
    assert engine.status([ref])[ref].phase is RunPhase.EXITED


def test_the_slurmrestd_api_runs_the_same_jobs(slurm: SlurmCluster, tmp_path: Path,
                                               slurm_cloud: Cloud) -> None:
    data = tmp_path / "data"
    server = start_cloud(data, slurm, "--stop-grace-s", "2", api="rest")
    try:
        cloud = _cloud(server.url, server.token, data, tmp_path / "h")
        nodes = cloud.json("nodes")
        assert sorted(n["id"] for n in nodes) == slurm.nodes
        script = 'echo "$NODE_RANK $SLURMD_NODENAME" > "$GPUCLOUD_CHECKPOINT_DIR/r$NODE_RANK"'
        job = run_wait(cloud, "--nodes", "2", "--gpus-per-node", "8", "--",
                         "sh", "-c", script)
        assert job["state"] == "SUCCEEDED"
        checkpoints = data / "slurm" / "jobs" / job["id"] / "checkpoint"
        ranks = sorted((checkpoints / f"r{r}").read_text().split() for r in range(2))
        assert [r[0] for r in ranks] == ["0", "1"] and ranks[0][1] != ranks[1][1]
        failed = run_wait(cloud, "--gpus", "1", "--", "sh", "-c", "exit 9")
        assert (failed["state"], failed["exit_code"]) == ("FAILED", 9)
        gate = tmp_path / "gate"
        running = cloud.json("run", "--gpus", "1", "--", "sh", "-c", gated(gate))["id"]
        cloud.wait_state(running, "RUNNING")
        cloud.ok("cancel", running)
        assert cloud.wait_state(running, "CANCELLED", "FAILED")["state"] == "CANCELLED"
    finally:
        server.stop()
