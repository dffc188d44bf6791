"""Time-based replay through the queueing layer, on traces small enough to work out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpucloud.cli import main
from gpucloud.scheduling.model import Device, Node, Workload
from gpucloud.scheduling.registry import POLICIES
from gpucloud.scheduling.replay import TimedPod, percentile, replay, timed_pods
from gpucloud.scheduling.traces import PodTimes

ONE_GPU_NODE = Node("n0", cpu_milli=8000, memory_mib=16384, devices=(Device(0, "V100M16"),))


def pod(name: str, arrival: int, duration: int | None, gpu_milli: int = 1000) -> TimedPod:
    limit = None if duration is None else float(duration)
    workload = Workload(
        name, cpu_milli=1000, memory_mib=1024, gpu_count=1, gpu_milli=gpu_milli, time_limit_s=limit
    )
    return TimedPod(workload, arrival, duration)


def test_a_pod_waits_for_the_one_before_it_to_finish() -> None:
    result = replay([ONE_GPU_NODE], [pod("a", 0, 100), pod("b", 10, 50)], POLICIES["bestfit"])
    assert result.waits_s == {"a": 0, "b": 90}
    assert result.completions_s == {"a": 100, "b": 140}
    assert result.never_started == ()
    # The GPU is busy from 0 to 150 without a gap: 100% over the replay.
    assert result.utilisation_pct() == pytest.approx(100.0)


def test_fractions_share_a_device_and_idle_time_lowers_utilisation() -> None:
    pods = [pod("a", 0, 100, 500), pod("b", 0, 100, 500), pod("c", 200, 100)]
    result = replay([ONE_GPU_NODE], pods, POLICIES["bestfit"])
    assert result.waits_s == {"a": 0, "b": 0, "c": 0}
    # Busy 0-100 and 200-300, idle 100-200: two thirds of the span.
    assert result.utilisation_pct() == pytest.approx(200 / 3)


def test_a_coarser_tick_delays_starts_to_the_end_of_their_bucket() -> None:
    result = replay([ONE_GPU_NODE], [pod("a", 5, 10)], POLICIES["bestfit"], tick_s=60)
    assert result.waits_s == {"a": 55}
    assert result.completions_s == {"a": 65}


def test_a_preempted_pod_starts_over_after_the_preemptor() -> None:
    urgent = TimedPod(
        Workload("b", cpu_milli=1000, gpu_count=1, gpu_milli=1000, priority=10, time_limit_s=50),
        10,
        50,
    )
    result = replay([ONE_GPU_NODE], [pod("a", 0, 100), urgent], POLICIES["bestfit"])
    assert result.preemptions == 1
    assert result.completions_s == {"b": 50, "a": 160}  # a reran in full from 60 to 160
    assert result.waits_s == {"a": 0, "b": 0}  # the first start counts as the wait


def test_a_pod_that_can_never_fit_is_reported() -> None:
    too_big = TimedPod(Workload("big", cpu_milli=1000, gpu_count=2, gpu_milli=1000), 0, 10)
    result = replay([ONE_GPU_NODE], [pod("a", 0, 10), too_big], POLICIES["bestfit"])
    assert result.never_started == ("big",)
    assert set(result.completions_s) == {"a"}


def test_trace_times_become_arrivals_durations_and_limits() -> None:
    w = Workload("p", cpu_milli=1000)
    timed = timed_pods([(w, PodTimes(30, 130, 50)), (w, PodTimes(None, None, None))])
    assert (timed[0].arrival_s, timed[0].duration_s, timed[0].workload.time_limit_s) == (
        30,
        80,
        80.0,
    )
    assert (timed[1].arrival_s, timed[1].duration_s) == (0, None)
    assert percentile([5, 1, 3, 2, 4], 50) == 3.0 and percentile([], 99) is None


def test_the_replay_command_prints_percentiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,8000,16384,1,V100M16\n")
    pods = tmp_path / "pods.csv"
    pods.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
        "creation_time,deletion_time,scheduled_time\n"
        "a,1000,1024,1,1000,,LS,Running,0,100,0\n"
        "b,1000,1024,1,1000,,LS,Running,10,60,10\n"
    )
    args = ["sim", "replay", "--nodes", str(nodes), "--pods", str(pods), "--tick", "1"]
    assert main.run([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["started"], report["completed"], report["never_started"]) == (2, 2, 0)
    assert report["wait_s"]["p99"] == 90.0 and report["completion_s"]["p50"] == 100.0
    assert main.run(args) == 0
    human = capsys.readouterr().out
    assert "2 started, 2 completed" in human and "wait: p50 0s" in human
    assert main.run(["sim", "replay", "--nodes", str(nodes), "--pods", "nope"]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["error: --pods nope: no such file"]
