"""The local engine with real processes: launch, status, stop, logs, restarts, lost supervisors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from gpucloud.core.errors import EngineError
from gpucloud.engines.base import Engine, LaunchSpec, ReplicaSpec, RunPhase, RunStatus
from gpucloud.engines.discovery import simulated_nodes
from gpucloud.engines.local import LOST_NO_RUN, LOST_SUPERVISOR, LocalEngine

NODES = simulated_nodes("4xH100", cpu_milli=4000, memory_mib=8192)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    # Whatever a failed test left running must not outlive it.
    engine = LocalEngine(path, NODES)
    for run in (path / "runs").glob("*"):
        engine.stop(run.name, force=True)


@pytest.fixture
def engine(data_dir: Path) -> LocalEngine:
    return LocalEngine(data_dir, NODES)


def spec(
    command: Sequence[str],
    allocation_id: str = "alloc_1",
    env: Mapping[str, str] | None = None,
    job_id: str = "job_1",
) -> LaunchSpec:
    return LaunchSpec(job_id, list(command), [replica(allocation_id, env=env)])


def replica(
    allocation_id: str,
    rank: int = 0,
    node_id: str = "local-0",
    env: Mapping[str, str] | None = None,
) -> ReplicaSpec:
    return ReplicaSpec(allocation_id, node_id, rank, [rank], dict(env or {}), 1000, 1024)


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def exited_with(status: RunStatus) -> int | None:
    """The exit code of a finished run; the engine must also say when it finished."""
    assert status.phase is RunPhase.EXITED and status.finished_at is not None, status
    return status.exit_code


def wait_ended(engine: LocalEngine, ref: str, timeout: float = 10.0) -> RunStatus:
    result: list[RunStatus] = []

    def ended() -> bool:
        result[:] = [engine.status([ref])[ref]]
        return result[0].phase is not RunPhase.RUNNING

    wait_for(ended, timeout, f"{ref} to end")
    return result[0]


def output(engine: LocalEngine, ref: str) -> str:
    return b"".join(engine.logs(ref)).decode()


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a parent that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_is_an_engine(engine: LocalEngine) -> None:
    typed: Engine = engine
    assert typed.name == "local"
    assert [n.id for n in engine.nodes()] == ["local-0"]


def test_exit_code_and_output(engine: LocalEngine, data_dir: Path) -> None:
    ref = engine.launch(spec(sh("echo hi; pwd; exit 3")))
    status = wait_ended(engine, ref)
    assert exited_with(status) == 3
    assert output(engine, ref) == f"hi\n{data_dir / 'jobs' / 'job_1' / 'work'}\n"


def test_env_pinning_reaches_the_command(engine: LocalEngine) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "2,3", "GPUCLOUD_JOB_ID": "job_1"}
    ref = engine.launch(spec(sh('echo "$CUDA_VISIBLE_DEVICES $GPUCLOUD_JOB_ID"'), env=env))
    assert wait_ended(engine, ref).exit_code == 0
    assert output(engine, ref) == "2,3 job_1\n"


def test_control_plane_secrets_are_not_leaked(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    monkeypatch.setenv("GPUCLOUD_TOKEN", "s3cret")
    monkeypatch.setenv("SOME_USER_SETTING", "kept")
    engine = LocalEngine(data_dir, NODES)
    ref = engine.launch(spec(sh('echo "${GPUCLOUD_TOKEN:-unset} $SOME_USER_SETTING"')))
    assert wait_ended(engine, ref).exit_code == 0
    assert output(engine, ref) == "unset kept\n"
    assert b"s3cret" not in (data_dir / "runs" / ref / "spec.json").read_bytes()


def test_launching_twice_runs_once(engine: LocalEngine, data_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    launch = spec(sh(f"echo once >> {marker}"))
    first = engine.launch(launch)
    second = engine.launch(launch)
    third = LocalEngine(data_dir, NODES).launch(launch)  # e.g. after a control-plane restart
    assert first == second == third
    wait_ended(engine, first)
    assert marker.read_text() == "once\n"


def test_stop_terminates_with_143(engine: LocalEngine) -> None:
    ref = engine.launch(spec(["sleep", "60"]))
    assert engine.status([ref])[ref].phase is RunPhase.RUNNING
    engine.stop(ref)
    assert exited_with(wait_ended(engine, ref)) == 143
    engine.stop(ref)  # no-op once ended
    engine.stop(ref, force=True)


def test_force_stop_kills_a_command_that_ignores_term(engine: LocalEngine) -> None:
    ref = engine.launch(spec(sh("trap '' TERM; echo ready; while :; do sleep 0.05; done")))
    wait_for(lambda: "ready" in output(engine, ref), what="the trap to be set")
    engine.stop(ref)
    time.sleep(0.3)
    assert engine.status([ref])[ref].phase is RunPhase.RUNNING
    engine.stop(ref, force=True)
    assert exited_with(wait_ended(engine, ref)) == 137


def test_restarted_engine_picks_up_a_running_run(
    engine: LocalEngine, data_dir: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    ref = engine.launch(spec(sh(f"while [ ! -e {go} ]; do sleep 0.05; done; exit 7")))
    restarted = LocalEngine(data_dir, NODES)
    assert restarted.status([ref])[ref].phase is RunPhase.RUNNING
    go.touch()
    assert exited_with(wait_ended(restarted, ref)) == 7


def test_killed_supervisor_means_lost_and_the_command_is_killed(
    engine: LocalEngine, data_dir: Path
) -> None:
    ref = engine.launch(spec(["sleep", "60"]))
    run_dir = data_dir / "runs" / ref
    runner_pid = int((run_dir / "started").read_text())
    child_pid = int((run_dir / "pgid").read_text())
    assert alive(child_pid)
    os.kill(runner_pid, signal.SIGKILL)
    status = wait_ended(engine, ref)
    assert status == RunStatus(RunPhase.LOST, message=LOST_SUPERVISOR)
    wait_for(lambda: not alive(child_pid), what="the orphaned command to be killed")
    assert engine.status([ref])[ref].phase is RunPhase.LOST  # and it stays lost


def test_follow_streams_until_exit(engine: LocalEngine) -> None:
    ref = engine.launch(spec(sh("for i in 1 2 3; do echo line$i; sleep 0.2; done")))
    chunks = list(engine.logs(ref, follow=True))
    assert b"".join(chunks) == b"line1\nline2\nline3\n"
    assert exited_with(engine.status([ref])[ref]) == 0
    assert b"".join(engine.logs(ref, offset=6)) == b"line2\nline3\n"
    assert b"".join(engine.logs(ref, follow=True, offset=12)) == b"line3\n"


def test_missing_command_exits_127(engine: LocalEngine) -> None:
    ref = engine.launch(spec(["/no/such/program", "--flag"]))
    assert exited_with(wait_ended(engine, ref)) == 127
    assert output(engine, ref).startswith("gpucloud: cannot run /no/such/program:")


def test_non_executable_command_exits_126(engine: LocalEngine, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo never\n")
    script.chmod(0o644)
    ref = engine.launch(spec([str(script)]))
    assert exited_with(wait_ended(engine, ref)) == 126
    assert "cannot run" in output(engine, ref)


def test_unknown_refs_are_lost(engine: LocalEngine) -> None:
    statuses = engine.status(["alloc_missing", "../etc"])
    assert statuses == {
        "alloc_missing": RunStatus(RunPhase.LOST, message=LOST_NO_RUN),
        "../etc": RunStatus(RunPhase.LOST, message=LOST_NO_RUN),
    }
    assert list(engine.logs("alloc_missing", follow=True)) == []
    engine.stop("alloc_missing")


def test_launch_refuses_bad_specs(engine: LocalEngine) -> None:
    with pytest.raises(EngineError):
        engine.launch(spec([]))
    with pytest.raises(EngineError):
        engine.launch(spec(["true"], allocation_id="../escape"))
    with pytest.raises(EngineError):
        engine.launch(LaunchSpec("job_1", ["true"], [replica("alloc_x", node_id="nowhere")]))


def test_supervisor_that_does_not_confirm_fails_the_launch(data_dir: Path) -> None:
    impatient = LocalEngine(data_dir, NODES, start_timeout_s=0.0)
    with pytest.raises(EngineError, match="supervisor"):
        impatient.launch(spec(["sleep", "60"]))
    status = impatient.status(["alloc_1"])["alloc_1"]
    assert status.phase is RunPhase.LOST


def test_checkpoint_dir_is_stable(engine: LocalEngine, data_dir: Path) -> None:
    path = engine.checkpoint_dir("job_1")
    assert Path(path) == data_dir / "jobs" / "job_1" / "checkpoint"
    assert Path(path).is_dir()
    assert LocalEngine(data_dir, NODES).checkpoint_dir("job_1") == path


def test_device_health_can_be_changed(engine: LocalEngine) -> None:
    engine.set_device_health("local-0", 2, healthy=False)
    devices = engine.nodes()[0].devices
    assert [d.healthy for d in devices] == [True, True, False, True]
    with pytest.raises(EngineError):
        engine.set_device_health("local-0", 9, healthy=False)


CONTROL_PLANE = """
import sys
from pathlib import Path
from gpucloud.engines.discovery import simulated_nodes
from gpucloud.engines.base import LaunchSpec, ReplicaSpec
from gpucloud.engines.local import LocalEngine

engine = LocalEngine(Path(sys.argv[1]), simulated_nodes("1xH100", 1000, 1024))
command = ["sh", "-c", f"while [ ! -e {sys.argv[2]} ]; do sleep 0.05; done; exit 7"]
replica = ReplicaSpec("alloc_1", "local-0", 0, [0], {}, 1000, 1024)
engine.launch(LaunchSpec("job_1", command, [replica]))
print("launched", flush=True)
sys.stdin.read()
"""


def test_runs_survive_ctrl_c_and_kill_9_of_the_control_plane(
    data_dir: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    control_plane = subprocess.Popen(
        [sys.executable, "-c", CONTROL_PLANE, str(data_dir), str(go)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,  # its own group, as a terminal's foreground job would be
    )
    try:
        assert control_plane.stdout is not None
        assert control_plane.stdout.readline() == b"launched\n"
        os.killpg(control_plane.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        os.kill(control_plane.pid, signal.SIGKILL)
        control_plane.wait()
    finally:
        control_plane.kill()
        control_plane.wait()
        if control_plane.stdin is not None:
            control_plane.stdin.close()
        if control_plane.stdout is not None:
            control_plane.stdout.close()
    engine = LocalEngine(data_dir, NODES)
    assert engine.status(["alloc_1"])["alloc_1"].phase is RunPhase.RUNNING
    go.touch()
    assert exited_with(wait_ended(engine, "alloc_1")) == 7
