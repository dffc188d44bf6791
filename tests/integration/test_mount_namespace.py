"""The local engine's mount namespace with real processes: a job with volumes runs in its own
namespace (the mount is there, the host never sees it), a fresh engine over the same data dir
(a restarted control plane) still adopts and stops the run, and without a namespace the job
gets its links and one line saying what is not enforced."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpucloud.engines import mount_ns
from gpucloud.engines.base import LaunchSpec, Mount, ReplicaSpec, RunPhase, RunStatus
from gpucloud.engines.discovery import simulated_nodes
from gpucloud.engines.local import LocalEngine

NODES = simulated_nodes("1xH100", cpu_milli=2000, memory_mib=4096)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    engine = LocalEngine(path, NODES)
    for run in (path / "runs").glob("*"):
        engine.stop(run.name, force=True)


def launch(engine: LocalEngine, script: str, mounts: list[Mount]) -> str:
    replica = ReplicaSpec("alloc_1", "local-0", 0, [0], {}, 1000, 1024, mounts=mounts)
    return engine.launch(LaunchSpec("job_1", ["/bin/sh", "-c", script], [replica]))


def status(engine: LocalEngine, ref: str, timeout: float = 10.0) -> RunStatus:
    deadline = time.monotonic() + timeout
    while (found := engine.status([ref])[ref]).phase is RunPhase.RUNNING:
        assert time.monotonic() < deadline, f"{ref} still running"
        time.sleep(0.05)
    return found


def output(engine: LocalEngine, ref: str) -> str:
    return b"".join(engine.logs(ref)).decode()


@pytest.mark.skipif(not mount_ns.available(),
                    reason="no private mount namespace here (needs root and util-linux unshare)")
def test_a_namespaced_run_is_adopted_and_stopped_by_a_restarted_engine(
        data_dir: Path, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    target = tmp_path / "seen-as"
    ref = launch(LocalEngine(data_dir, NODES),
                 f"echo ready > {target}/ready; exec sleep 60",
                 [Mount(str(volume), str(target), read_only=False)])
    deadline = time.monotonic() + 10
    while not (volume / "ready").exists():
        assert time.monotonic() < deadline, output(LocalEngine(data_dir, NODES), ref)
        time.sleep(0.05)
    assert not (target / "ready").exists()  # written through the job's mount, not the host's
    restarted = LocalEngine(data_dir, NODES)  # the control plane came back
    assert restarted.status([ref])[ref].phase is RunPhase.RUNNING
    restarted.stop(ref)
    ended = status(restarted, ref)  # the signal reached the command itself (unshare and sh exec)
    assert (ended.phase, ended.exit_code) == (RunPhase.EXITED, 128 + 15), ended


def test_without_a_namespace_volumes_are_links_and_the_log_says_so(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mount_ns, "available", lambda: False)
    volume = tmp_path / "volume"
    volume.mkdir()
    engine = LocalEngine(data_dir, NODES)
    ref = launch(engine, "echo hi > mnt/v/f && readlink mnt/v",
                 [Mount(str(volume), "/mnt/v", read_only=True)])
    assert status(engine, ref).exit_code == 0, output(engine, ref)
    text = output(engine, ref)
    assert text.count(mount_ns.FALLBACK_NOTE) == 1 and text.endswith(f"{volume}\n"), text
    assert (volume / "f").read_text() == "hi\n"  # ':ro' was not enforced, as the note says
