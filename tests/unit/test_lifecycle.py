from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpucloud.core.launch_env import Rendezvous, job_environment, rendezvous_port
from gpucloud.core.lifecycle import Observed, StopReason, decide
from gpucloud.core.runs import RunPhase, RunStatus
from gpucloud.core.states import JobState, Reason

SOLO = Rendezvous(0, 1, "127.0.0.1", 29500)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def observed(phase: RunPhase = RunPhase.RUNNING, code: int | None = None, **kw: object) -> Observed:
    base: dict[str, object] = dict(
        state=JobState.RUNNING,
        run=RunStatus(phase, code),
        stop_request=None,
        started_at=T0,
        max_duration_s=None,
        stop_requested_at=None,
        stop_reason=None,
        stop_forced=False,
    )
    base.update(kw)
    return Observed(**base)  # type: ignore[arg-type]


def test_starting_run_that_is_running_is_marked_running() -> None:
    decision = decide(observed(state=JobState.STARTING), T0, 10)
    assert decision.mark_running and decision.finish is None


def test_exit_codes_map_to_terminal_states() -> None:
    ok = decide(observed(RunPhase.EXITED, 0), T0, 10).finish
    bad = decide(observed(RunPhase.EXITED, 3), T0, 10).finish
    assert ok is not None and ok.state is JobState.SUCCEEDED
    assert bad is not None and (bad.state, bad.exit_code) == (JobState.FAILED, 3)


def test_a_quick_exit_still_passes_through_running() -> None:
    decision = decide(observed(RunPhase.EXITED, 0, state=JobState.STARTING), T0, 10)
    assert decision.mark_running and decision.finish is not None


def test_cancel_asks_politely_then_forces_after_the_grace() -> None:
    asked = decide(observed(stop_request=StopReason.CANCELLED), T0, 10)
    assert asked.request_stop is StopReason.CANCELLED and not asked.force_stop
    waiting = observed(
        stop_request=StopReason.CANCELLED, stop_requested_at=T0, stop_reason=StopReason.CANCELLED
    )
    assert not decide(waiting, T0 + timedelta(seconds=5), 10).force_stop
    assert decide(waiting, T0 + timedelta(seconds=10), 10).force_stop
    forced = observed(
        stop_request=StopReason.CANCELLED,
        stop_requested_at=T0,
        stop_reason=StopReason.CANCELLED,
        stop_forced=True,
    )
    assert not decide(forced, T0 + timedelta(seconds=60), 10).force_stop


def test_exit_after_cancel_is_cancelled_with_the_code_kept() -> None:
    finish = decide(observed(RunPhase.EXITED, 143, stop_reason=StopReason.CANCELLED), T0, 10).finish
    assert finish is not None
    assert (finish.state, finish.reason, finish.exit_code) == (
        JobState.CANCELLED,
        Reason.CANCELLED_BY_USER,
        143,
    )


def test_max_duration_is_enforced() -> None:
    under = decide(observed(max_duration_s=60), T0 + timedelta(seconds=59), 10)
    over = decide(observed(max_duration_s=60), T0 + timedelta(seconds=60), 10)
    assert under.request_stop is None and over.request_stop is StopReason.MAX_DURATION
    finish = decide(
        observed(RunPhase.EXITED, 143, stop_reason=StopReason.MAX_DURATION), T0, 10
    ).finish
    assert finish is not None and finish.reason is Reason.MAX_DURATION_EXCEEDED


def test_lost_runs_fail_with_the_engine_message() -> None:
    finish = decide(observed(RunPhase.LOST, None), T0, 10).finish
    assert finish is not None and finish.state is JobState.FAILED and finish.reason is Reason.LOST


def test_environment_pins_devices_and_hides_other_vendors() -> None:
    env = job_environment(
        user_env={"A": "1"},
        job_id="job_1",
        job_name=None,
        allocation_id="a",
        node_id="n",
        checkpoint_dir="/ck",
        restart_count=2,
        gpu_model="H100",
        device_indexes=[4, 5],
        simulated=True,
        rendezvous=SOLO,
    )
    assert env["CUDA_VISIBLE_DEVICES"] == "4,5" and env["HIP_VISIBLE_DEVICES"] == ""
    assert env["GPUCLOUD_CHECKPOINT_DIR"] == "/ck" and env["GPUCLOUD_RESTART_COUNT"] == "2"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and env["A"] == "1"
    assert env["GPUCLOUD_SIMULATED_GPUS"] == "1"
    cpu_only = job_environment(
        user_env={},
        job_id="j",
        job_name="n",
        allocation_id="a",
        node_id="n",
        checkpoint_dir="/ck",
        restart_count=0,
        gpu_model=None,
        device_indexes=[],
        simulated=False,
        rendezvous=SOLO,
    )
    assert cpu_only["CUDA_VISIBLE_DEVICES"] == "" and "GPUCLOUD_SIMULATED_GPUS" not in cpu_only
    amd = job_environment(
        user_env={},
        job_id="j",
        job_name=None,
        allocation_id="a",
        node_id="n",
        checkpoint_dir="/ck",
        restart_count=0,
        gpu_model="MI300X",
        device_indexes=[1],
        simulated=False,
        rendezvous=SOLO,
    )
    assert amd["HIP_VISIBLE_DEVICES"] == "1" and amd["CUDA_VISIBLE_DEVICES"] == ""


def test_every_node_of_a_multi_node_job_learns_the_layout_torchrun_expects() -> None:
    envs = [
        job_environment(
            user_env={},
            job_id="j",
            job_name=None,
            allocation_id=f"a{rank}",
            node_id=f"n{rank}",
            checkpoint_dir="/ck",
            restart_count=0,
            gpu_model="H100",
            device_indexes=[0, 1, 2, 3],
            simulated=False,
            rendezvous=Rendezvous(rank, 2, "10.0.0.7", 29123),
        )
        for rank in range(2)
    ]
    for rank, env in enumerate(envs):
        assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("10.0.0.7", "29123")
        assert (env["NNODES"], env["NODE_RANK"], env["LOCAL_WORLD_SIZE"]) == ("2", str(rank), "4")
        assert (env["WORLD_SIZE"], env["RANK"]) == ("8", str(4 * rank))
        assert (env["PET_NNODES"], env["PET_NODE_RANK"], env["PET_NPROC_PER_NODE"]) == (
            "2", str(rank), "4")
    assert rendezvous_port("alc_x") == rendezvous_port("alc_x")
    assert 20000 <= rendezvous_port("alc_y") < 30000
