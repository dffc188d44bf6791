"""The Slurm engine's pure parts, on the JSON shapes Slurm 22.05.8 prints (see
../shared/slurm/README.md): no Slurm needed, so these run everywhere."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gpucloud.core.errors import EngineError
from gpucloud.core.runs import RunPhase
from gpucloud.engines.base import LaunchSpec, Mount, ReplicaSpec
from gpucloud.engines.slurm.cli import parse_squeue_text, sbatch_args
from gpucloud.engines.slurm.engine import Snapshot
from gpucloud.engines.slurm.hostlist import expand
from gpucloud.engines.slurm.parse import (
    exit_code_of,
    feature_labels,
    gpu_model,
    node_report,
    parse_document,
    parse_gres,
    parse_job,
    parse_node,
)
from gpucloud.engines.slurm.rest import submit_body
from gpucloud.engines.slurm.script import (
    NO_NAMESPACE_NOTE,
    RunPaths,
    render,
    time_limit_minutes,
)
from gpucloud.engines.slurm.status import ExitFile, RunFiles, run_status

NODE: dict[str, Any] = {
    "name": "gpu-node-0", "state": "mixed", "state_flags": [], "reason": "", "gres": "gpu:h100:8",
    "gres_used": "gpu:h100:2(IDX:0-1)", "cpus": 32, "alloc_cpus": 2, "idle_cpus": 30,
    "real_memory": 65536, "alloc_memory": 2048, "partitions": ["gpu"], "address": "127.0.0.1",
    "port": 17000, "features": "rack:r1,leaf_switch=s1",
    "active_features": "rack:r1,leaf_switch=s1",
    "tres": "cpu=32,mem=64G,billing=32,gres/gpu=8,gres/gpu:h100=8",
}
JOB: dict[str, Any] = {
    "job_id": 9, "name": "gpucloud-alc_1", "job_state": "RUNNING", "state_reason": "None",
    "user_name": "root", "partition": "gpu", "nodes": "gpu-node-[0-1]", "node_count": 2,
    "batch_host": "gpu-node-0", "tres_per_node": "gres:gpu:2", "cpus": 2,
    "submit_time": 1795517896, "start_time": 1795517897, "end_time": 1827053897,
    "exit_code": 0, "requeue": False, "restart_cnt": 0, "comment": "gpucloud job=job_1",
}


def node(**changes: Any) -> dict[str, Any]:
    return {**NODE, **changes}


def job(**changes: Any) -> dict[str, Any]:
    return {**JOB, **changes}


# -- host lists and GRES ------------------------------------------------------------------------


def test_host_lists_expand_ranges_padding_and_lists() -> None:
    assert expand("gpu-node-[0-1,3]") == ["gpu-node-0", "gpu-node-1", "gpu-node-3"]
    assert expand("n[01-03],login") == ["n01", "n02", "n03", "login"]
    assert expand("r[1-2]-n[0-1]") == ["r1-n0", "r1-n1", "r2-n0", "r2-n1"]
    assert expand("") == [] and expand("(null)") == []
    with pytest.raises(ValueError, match="unbalanced"):
        expand("n[1-2")


def test_gres_strings_of_every_spelling() -> None:
    assert [(g.name, g.type, g.count) for g in parse_gres("gpu:h100:8(S:0-1)")] == [
        ("gpu", "h100", 8)]
    assert [(g.type, g.count) for g in parse_gres("gpu:8")] == [(None, 8)]
    assert [(g.name, g.type, g.count) for g in parse_gres("gpu:h100:4(S:0,1),gpu:a100:2,shard:8")
            ] == [("gpu", "h100", 4), ("gpu", "a100", 2), ("shard", None, 8)]
    assert parse_gres("(null)") == () and parse_gres("") == ()


def test_gres_types_map_to_catalog_models() -> None:
    assert gpu_model("h100", None) == "H100"
    assert gpu_model("a100-80g", None) == "A100-80G"
    assert gpu_model(None, "H100") == "H100"  # untyped GRES: the operator's setting
    assert gpu_model("mystery", None) == "MYSTERY"  # shown as Slurm calls it


# -- nodes -------------------------------------------------------------------------------------


def test_a_node_report_has_devices_capacity_labels_and_address() -> None:
    report = node_report(parse_node(NODE))
    assert report.id == "gpu-node-0" and report.healthy and not report.drained
    assert report.cpu_milli == 32000 and report.memory_mib == 65536
    assert report.address == "127.0.0.1"
    assert [d.index for d in report.devices] == list(range(8))
    assert {d.model for d in report.devices} == {"H100"}
    assert report.devices[0].memory_mib == 80 * 1024
    assert dict(report.labels) == {"rack": "r1", "leaf_switch": "s1"}


def test_features_become_topology_labels() -> None:
    assert feature_labels(["nvlink_island=n0", "rack:r2", "ib", "rack=r9"]) == {
        "nvlink_island": "n0", "rack": "r2", "ib": "true"}


def test_down_and_not_responding_nodes_are_unhealthy() -> None:
    down = node_report(parse_node(node(state="down", state_flags=[], reason="xid79")))
    assert not down.healthy and "down" in down.message and "xid79" in down.message
    silent = node_report(parse_node(node(state="down", state_flags=["NOT_RESPONDING"])))
    assert not silent.healthy and "not responding" in silent.message
    flagged = node_report(parse_node(node(state="idle", state_flags=["NOT_RESPONDING"])))
    assert not flagged.healthy
    # Every node is "unknown" for a moment after slurmctld restarts: not a fault by itself.
    assert node_report(parse_node(node(state="unknown", state_flags=[]))).healthy
    assert not node_report(parse_node(node(state="unknown", state_flags=["NOT_RESPONDING"]))
                           ).healthy


def test_someone_elses_drain_is_unhealthy_and_gpuclouds_is_only_drained() -> None:
    theirs = node_report(parse_node(node(state="idle", state_flags=["DRAIN"], reason="ecc")))
    assert not theirs.healthy and theirs.drained and theirs.drain_reason == "ecc"
    assert "drained outside gpucloud" in theirs.message
    ours = node_report(parse_node(
        node(state="mixed", state_flags=["DRAIN"], reason="gpucloud: ECC errors")))
    assert ours.healthy and ours.drained and ours.drain_reason == "gpucloud: ECC errors"


def test_later_releases_list_shaped_state_is_read_too() -> None:
    parsed = parse_node(node(state=["IDLE", "DRAIN"], reason="gpucloud: x", state_flags=None))
    assert parsed.state == "idle" and "DRAIN" in parsed.flags
    assert node_report(parsed).drained


def test_untyped_gres_takes_the_configured_model() -> None:
    report = node_report(parse_node(node(gres="gpu:4")), default_model="A100-80G")
    assert [d.model for d in report.devices] == ["A100-80G"] * 4


def test_errors_in_a_json_answer_are_raised() -> None:
    with pytest.raises(EngineError, match="Unable to contact"):
        parse_document({"errors": [{"error": "Unable to contact"}], "jobs": []}, "jobs", "squeue")
    with pytest.raises(EngineError, match="no 'nodes' array"):
        parse_document({"errors": []}, "nodes", "sinfo")
    assert parse_document({"errors": [], "jobs": [JOB]}, "jobs", "squeue") == [JOB]


# -- jobs --------------------------------------------------------------------------------------


def test_a_job_record_from_squeue_json() -> None:
    parsed = parse_job(JOB)
    assert parsed.job_id == 9 and parsed.state == "RUNNING"
    assert parsed.nodes == ("gpu-node-0", "gpu-node-1")
    assert parsed.start_time == 1795517897 and parsed.wait_status == 0


def test_squeue_s_text_output_reads_as_its_json() -> None:
    sep = "\x1f"
    lines = [
        sep.join(["9", "RUNNING", "None", "0", "1795517897", "1827053897", "gpu-node-[0-1]",
                  "gpucloud-alc_1", "gpucloud job=job_1 launch=alc_1", ""]),
        sep.join(["10", "FAILED", "NonZeroExitCode", "768", "5", "6", "gpu-node-0", "wrap",
                  "(null)", ""]),
        sep.join(["11_[1-3]", "PENDING", "Resources", "0", "N/A", "N/A", "", "arr", "", ""]),
    ]
    text = [parse_job(j) for j in parse_squeue_text("\n".join(lines))]
    assert [j.job_id for j in text] == [9, 10]  # array jobs are not gpucloud's
    assert text[0].nodes == parse_job(JOB).nodes == ("gpu-node-0", "gpu-node-1")
    assert (text[0].state, text[0].name, text[0].start_time) == ("RUNNING", "gpucloud-alc_1",
                                                                 1795517897)
    assert text[1].wait_status == 768 and text[1].comment == ""


def test_raw_wait_statuses_are_shell_exit_codes() -> None:
    assert exit_code_of(768) == 3  # squeue's exit_code of "exit 3"
    assert exit_code_of(9) == 137 and exit_code_of(15) == 143
    assert exit_code_of(0) == 0


def test_later_releases_exit_code_object_is_read_too() -> None:
    parsed = parse_job(job(exit_code={"status": ["FAILED"], "return_code": 3},
                           job_state=["FAILED"], start_time={"set": True, "number": 5}))
    assert parsed.wait_status == 768 and parsed.state == "FAILED" and parsed.start_time == 5
    signalled = parse_job(job(exit_code={"status": ["SIGNALED"], "return_code": 0,
                                         "signal": {"id": 9, "name": "KILL"}}))
    assert signalled.wait_status == 9


def test_a_snapshot_finds_gpuclouds_jobs_by_launch_id() -> None:
    snap = Snapshot([job(), job(job_id=10, name="other"),
                     job(job_id=8, name="gpucloud-alc_1", job_state="CANCELLED"),
                     job(job_id=11, name="gpucloud-alc_2", job_state="COMPLETED")], 0.0)
    found = snap.of_launch("alc_1")
    assert found is not None and found.job_id == 9  # the live one wins over an ended duplicate
    assert [snap.job(i).job_id for i in (8, 9, 10)] == [8, 9, 10]  # type: ignore[union-attr]
    assert snap.job(12) is None and snap.of_launch("other") is None
    assert snap.launches() == ["alc_1", "alc_2"]


def test_a_snapshot_parses_only_the_jobs_looked_up() -> None:
    """Slurm holds every user's jobs for MinJobAge: a listing of thousands is parsed lazily."""
    unparsable = job(job_id=12, name="someone-else", exit_code={"signal": 5})
    with pytest.raises(AttributeError):
        parse_job(unparsable)
    snap = Snapshot([job(), unparsable], 0.0)
    found = snap.of_launch("alc_1")
    assert found is not None and found.job_id == 9  # the other job was never parsed


# -- status ------------------------------------------------------------------------------------


def test_pending_and_running() -> None:
    pending = run_status(parse_job(job(job_state="PENDING", state_reason="Resources")),
                         RunFiles(), 9)
    assert pending.phase is RunPhase.PENDING and "Resources" in pending.message
    running = run_status(parse_job(JOB), RunFiles(started=True), 9)
    assert running.phase is RunPhase.RUNNING


def test_the_exit_code_file_wins_over_squeue() -> None:
    files = RunFiles(True, ExitFile(3, 100.0), {0: ExitFile(3, 99.0)})
    done = run_status(parse_job(job(job_state="FAILED", exit_code=768)), files, 9)
    assert done.phase is RunPhase.EXITED and done.exit_code == 3 and not done.platform_fault
    assert done.finished_at is not None and done.finished_at.timestamp() == 100.0


def test_without_files_squeue_s_wait_status_is_decoded() -> None:
    killed = run_status(parse_job(job(job_state="CANCELLED", exit_code=9)), RunFiles(True), 9)
    assert killed.phase is RunPhase.EXITED and killed.exit_code == 137
    assert "cancelled in Slurm" in killed.message


def test_a_gang_reports_its_first_failing_rank() -> None:
    files = RunFiles(True, ExitFile(137, 50.0), {0: ExitFile(143, 41.0), 1: ExitFile(3, 40.0)})
    done = run_status(parse_job(job(job_state="FAILED", exit_code=768)), files, 9)
    assert done.exit_code == 3


def test_a_node_failure_is_a_platform_fault_whatever_the_files_say() -> None:
    failed = parse_job(job(job_state="NODE_FAIL", exit_code=0, state_reason="NodeDown"))
    status = run_status(failed, RunFiles(True, ExitFile(0, 10.0)), 9)
    assert status.phase is RunPhase.EXITED and status.platform_fault
    assert "NODE_FAIL" in status.message and "gpu-node-0" in status.message


def test_a_job_slurm_forgot_reports_from_its_files_or_is_lost() -> None:
    finished = run_status(None, RunFiles(True, ExitFile(5, 10.0)), 9)
    assert finished.phase is RunPhase.EXITED and finished.exit_code == 5
    lost = run_status(None, RunFiles(True), 9)
    assert lost.phase is RunPhase.LOST and "Slurm job 9" in lost.message
    assert "no exit status" in lost.message


# -- scripts and submissions -------------------------------------------------------------------


def launch(nodes: int = 2, gpus: int = 2) -> LaunchSpec:
    replicas = [
        ReplicaSpec(f"alc_{rank}", f"gpu-node-{rank}", rank, list(range(gpus)),
                    {"NODE_RANK": str(rank), "MASTER_ADDR": "10.0.0.1", "SECRET": "it's $x",
                     "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(gpus))),
                     "HIP_VISIBLE_DEVICES": ""}, 1500, 2048)
        for rank in range(nodes)
    ]
    return LaunchSpec("job_1", ["sh", "-c", "echo hi; exit 3"], replicas, time_limit_s=600)


GRES = {f"gpu-node-{i}": ("h100",) * 8 for i in range(4)}
PATHS = RunPaths(Path("/shared/runs/alc_0"), Path("/shared/jobs/job_1/work"))


def test_a_gang_is_one_pinned_submission() -> None:
    rendered = render(launch(), PATHS, GRES, partition="gpu", time_margin_s=300)
    sub = rendered.submission
    assert sub.name == "gpucloud-alc_0" and "job=job_1" in sub.comment
    assert sub.nodelist == ("gpu-node-0", "gpu-node-1") and sub.gres == "gpu:h100:2"
    assert sub.cpus_per_task == 2 and sub.memory_mib == 2048 and sub.time_limit_min == 15
    args = sbatch_args(sub)
    assert "--nodes=2" in args and "--nodelist=gpu-node-0,gpu-node-1" in args
    assert "--no-requeue" in args and "--gres=gpu:h100:2" in args and "--time=15" in args
    assert args[-1] == "/shared/runs/alc_0/batch.sh"
    assert "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=1" in sub.script
    body = submit_body(sub, {"PATH": "/bin"})
    assert body["job"]["nodelist"] == "gpu-node-0,gpu-node-1" and body["job"]["requeue"] is False
    assert body["job"]["environment"] == {"PATH": "/bin"} and body["script"] == sub.script


def test_each_node_gets_its_replica_s_environment_but_slurm_s_gpus() -> None:
    rendered = render(launch(), PATHS, GRES, partition=None, time_margin_s=300)
    assert "  gpu-node-1:0) rank=1 ;;" in rendered.task_script
    assert "gpucloud_mine" not in rendered.task_script  # one per node: Slurm's list as it is
    assert "sh -c 'echo hi; exit 3'" in rendered.task_script
    env1 = rendered.env_files[1]
    assert "export NODE_RANK=1" in env1 and "export MASTER_ADDR=10.0.0.1" in env1
    assert "export SECRET='it'\"'\"'s $x'" in env1  # quoted: no expansion, no injection
    assert "CUDA_VISIBLE_DEVICES" not in env1 and "HIP_VISIBLE_DEVICES" not in env1


def with_volume(read_only: bool) -> LaunchSpec:
    spec = launch(nodes=1, gpus=0)
    replica = dataclasses.replace(
        spec.replicas[0], mounts=[Mount("/shared/storage/volumes/vol_1", "/data", read_only)])
    return dataclasses.replace(spec, replicas=[replica])


def test_a_job_without_volumes_or_datasets_runs_without_a_mount_namespace() -> None:
    rendered = render(launch(nodes=1, gpus=0), PATHS, GRES, partition=None, time_margin_s=300)
    assert "unshare" not in rendered.task_script and "gpucloud_ns" not in rendered.task_script


def test_where_the_node_refuses_a_namespace_the_links_stand_and_the_log_says_so(
        tmp_path: Path) -> None:
    """The task's namespace branch run for real by bash, as a non-root user would see it."""
    task = render(with_volume(True), PATHS, GRES, partition=None, time_margin_s=300).task_script
    assert "mount --bind -o ro" in task
    start = task.index("gpucloud_ns=()")
    branch = task[start:task.index("\nfi", start) + 3]
    done = subprocess.run(["bash", "-c", 'id() { echo 1000; }\n' + branch
                           + '\n"${gpucloud_ns[@]}" echo ran-plain'],
                          capture_output=True, text=True, timeout=10, check=True)
    assert done.stdout == NO_NAMESPACE_NOTE + "\nran-plain\n"


def test_a_cpu_only_replica_keeps_gpucloud_s_empty_device_lists() -> None:
    rendered = render(launch(nodes=1, gpus=0), PATHS, GRES, partition=None, time_margin_s=300)
    assert rendered.submission.gres is None
    assert "export CUDA_VISIBLE_DEVICES=''" in rendered.env_files[0]
    assert "srun" not in rendered.submission.script  # one node: no job step


def test_a_gang_stacked_on_one_node_is_one_task_per_replica() -> None:
    spec = launch()
    stacked = LaunchSpec(spec.job_id, spec.command, [
        ReplicaSpec(r.allocation_id, "gpu-node-2", r.rank, [2 * r.rank, 2 * r.rank + 1], r.env,
                    r.cpu_milli, r.memory_mib) for r in spec.replicas])
    rendered = render(stacked, PATHS, GRES, partition=None, time_margin_s=300)
    sub = rendered.submission
    assert sub.nodelist == ("gpu-node-2",) and sub.tasks_per_node == 2
    assert sub.gres == "gpu:h100:4" and sub.memory_mib == 4096  # the node's share of both
    assert "--ntasks-per-node=2" in sbatch_args(sub) and "--nodes=1" in sbatch_args(sub)
    assert "srun --nodes=1 --ntasks=2 --ntasks-per-node=2" in sub.script
    assert "  gpu-node-2:0) rank=0 ;;" in rendered.task_script
    assert "  gpu-node-2:1) rank=1 ;;" in rendered.task_script
    assert "gpucloud_all[@]:$((local * 2)):2" in rendered.task_script  # its slice of Slurm's


def test_launches_slurm_cannot_express_are_refused() -> None:
    spec = launch()
    uneven = LaunchSpec(spec.job_id, spec.command,
                        [spec.replicas[0], ReplicaSpec("alc_1", "gpu-node-1", 1, [0], {}, 1, 1)])
    with pytest.raises(EngineError, match="same GPU count"):
        render(uneven, PATHS, GRES, partition=None, time_margin_s=300)
    lopsided = LaunchSpec(spec.job_id, spec.command, [
        ReplicaSpec(f"alc_{rank}", node, rank, [rank], {}, 1000, 1)
        for rank, node in enumerate(["gpu-node-0", "gpu-node-0", "gpu-node-1"])])
    with pytest.raises(EngineError, match="same number of replicas on every node"):
        render(lopsided, PATHS, GRES, partition=None, time_margin_s=300)
    with pytest.raises(EngineError, match="does not report node"):
        render(spec, PATHS, {}, partition=None, time_margin_s=300)
    bad = LaunchSpec("job_1", ["true"], [ReplicaSpec("alc_0", "gpu-node-0", 0, [], {"A-B": "x"},
                                                     1000, 0)])
    with pytest.raises(EngineError, match="not a valid environment variable"):
        render(bad, PATHS, GRES, partition=None, time_margin_s=300)


def test_slurm_s_time_limit_comes_after_gpuclouds() -> None:
    assert time_limit_minutes(None, 300) is None
    assert time_limit_minutes(60, 300) == 6  # 60 s + 5 min margin
    assert time_limit_minutes(36000, 300) == 660  # 10 h + 10 %
