"""The local engine: each allocation is a process group on this machine, watched by a supervisor.

Layout under ``data_dir``::

    runs/<allocation_id>/   spec.json, lock, pgid, started, exit_code, output.log, runner.log
    launches/<ref>.json     the allocation ids of a multi-node launch (and .teardown)
    jobs/<job_id>/work/     the job's working directory
    jobs/<job_id>/checkpoint/

Each replica (one per node of a job) is its own run; the nodes and their health (drains, the
fault log, drills, burn-in) are ``local_fleet.LocalFleet``'s. The engine ref is rank 0's
allocation id; a multi-node launch lists its replicas in ``launches/``, and when one replica
fails the others are stopped (SIGTERM, then SIGKILL after the grace). All state lives in files
and the supervisor
(``local_runner``) is detached from the control plane, so a restarted control plane (or a second
``LocalEngine`` over the same ``data_dir``) picks runs up where they are: running runs are still
RUNNING and later report their real exit code.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpucloud.core.datasets import dataset_env_name
from gpucloud.core.errors import EngineError
from gpucloud.core.faults import FaultSignal, SignalKind
from gpucloud.core.runs import combine
from gpucloud.engines import local_runner, mount_ns
from gpucloud.engines.base import (
    BurnInResult,
    EngineRef,
    LaunchSpec,
    NodeReport,
    ReplicaSpec,
    RunPhase,
    RunStatus,
    ShellContext,
)
from gpucloud.engines.local_fleet import LocalFleet
from gpucloud.engines.logfile import read_output
from gpucloud.engines.storage_dirs import prepare_workspace, storage_root

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
LOST_NO_RUN = "no such run"
DATASET_ENV_PREFIX = dataset_env_name("")  # GPUCLOUD_DATASET_: the job reads a dataset
LOST_SUPERVISOR = "supervisor died without recording an exit status"


def _safe_id(kind: str, value: str) -> str:
    """Ids become path components: refuse anything that could leave the data directory."""
    if not _SAFE_ID.fullmatch(value):
        raise EngineError(f"invalid {kind} {value!r}")
    return value


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode(errors="replace").strip()


class LocalEngine:
    """Runs allocations as local process groups; see the module docstring for the layout."""

    name = "local"
    caches_datasets = True  # each node's dataset cache is a directory of the data dir

    def __init__(
        self,
        data_dir: Path,
        nodes: list[NodeReport],
        start_timeout_s: float = 10.0,
        teardown_grace_s: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.runs_dir = self.data_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.fleet = LocalFleet(nodes, self.data_dir)
        self._start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        # Supervisors this process started: polled so that finished ones do not stay zombies.
        self._runners: dict[str, subprocess.Popen[bytes]] = {}
        self._teardown_grace_s = teardown_grace_s

    # -- nodes and their health (engines/local_fleet.py) ---------------------------------------

    def nodes(self) -> list[NodeReport]:
        return self.fleet.nodes()

    def drain(self, node_id: str, reason: str) -> None:
        self.fleet.drain(node_id, reason)

    def resume(self, node_id: str) -> None:
        self.fleet.resume(node_id)

    def set_device_health(self, node_id: str, index: int, healthy: bool) -> None:
        self.fleet.set_device_health(node_id, index, healthy)

    def faults(self, after: int) -> list[FaultSignal]:
        return self.fleet.faults(after)

    def watch_nvml(self, nvml: Any) -> None:
        self.fleet.watch_nvml(nvml)

    def inject_fault(self, node_id: str, kind: SignalKind, device_index: int | None,
                     code: int | None, duration_s: float) -> None:
        self.fleet.inject_fault(node_id, kind, device_index, code, duration_s)

    def burn_in(self, node_id: str, device_index: int | None) -> BurnInResult:
        return self.fleet.burn_in(node_id, device_index)

    # -- runs ----------------------------------------------------------------------------------

    def checkpoint_dir(self, job_id: str) -> str:
        path = self.data_dir / "jobs" / _safe_id("job id", job_id) / "checkpoint"
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def _work_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id / "work"

    def _run_dir(self, ref: EngineRef) -> Path:
        return self.runs_dir / _safe_id("engine ref", ref)

    def launch(self, spec: LaunchSpec) -> EngineRef:
        """Start every replica's command once; launching the same launch again is a no-op
        for the replicas already started (so a crash halfway through is finished, not redone).

        Returns the launch id (rank 0's allocation id) as the ref. Raises EngineError when a
        supervisor did not confirm its start within ``start_timeout_s``.
        """
        ref = _safe_id("launch id", spec.launch_id)
        if not spec.command:
            raise EngineError(f"launch {ref}: empty command")
        known = {node.id for node in self.nodes()}
        for replica in spec.replicas:
            if replica.node_id not in known:
                raise EngineError(f"allocation {replica.allocation_id}: unknown node "
                                  f"{replica.node_id!r}")
        if len(spec.replicas) > 1:
            self._write_gang(ref, [r.allocation_id for r in spec.replicas])
        for replica in spec.replicas:
            self._launch_replica(spec, replica)
        return ref

    def _write_gang(self, ref: str, allocation_ids: list[str]) -> None:
        """The launch's replicas, recorded before any starts: status and stop find them all."""
        path = self.data_dir / "launches" / f"{ref}.json"
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(allocation_ids))
        tmp.replace(path)

    def _replicas(self, ref: EngineRef) -> list[str]:
        path = self.data_dir / "launches" / f"{ref}.json"
        try:
            return [str(a) for a in json.loads(path.read_text())]
        except FileNotFoundError:
            return [ref]

    def _launch_replica(self, spec: LaunchSpec, replica: ReplicaSpec) -> None:
        ref = replica.allocation_id
        run_dir = self._run_dir(ref)
        job_id = _safe_id("job id", spec.job_id)
        # Idempotent, so before the claim. The links stay even when mounting for real: the
        # documented ./<path> keeps working either way.
        prepare_workspace(self._work_dir(job_id), replica.mounts, replica.cache_fills)
        try:
            run_dir.mkdir()  # atomic claim: whoever creates the directory starts the run
        except FileExistsError:
            return
        # Lock before anything else exists, so no observer ever sees this run unsupervised.
        lock_fd = os.open(run_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            command = self._mounted(spec.command, replica, run_dir)
            runner = self._spawn(command, replica.env, run_dir, job_id, lock_fd)
        except OSError as exc:
            raise EngineError(f"allocation {ref}: cannot start: {exc}") from exc
        finally:
            os.close(lock_fd)  # the supervisor holds its own reference to the locked file
        with self._lock:
            self._runners[ref] = runner
        self._await_start(ref, run_dir, runner)

    def _mounted(self, command: Sequence[str], replica: ReplicaSpec,
                 run_dir: Path) -> Sequence[str]:
        """A job with volumes or datasets runs in its own mount namespace where it can
        (root); otherwise its output starts with one line saying what is not enforced."""
        uses_datasets = replica.cache_fills or any(
            k.startswith(DATASET_ENV_PREFIX) for k in replica.env)
        if not replica.mounts and not uses_datasets:
            return command
        if not mount_ns.available():
            (run_dir / "output.log").write_text(mount_ns.FALLBACK_NOTE)
            return command
        storage = storage_root(self)
        return mount_ns.wrap(command, replica.mounts,
                             [storage / "datasets", storage / "node-cache"])

    def _spawn(
        self,
        command: Sequence[str],
        job_env: Mapping[str, str],
        run_dir: Path,
        job_id: str,
        lock_fd: int,
    ) -> subprocess.Popen[bytes]:
        """Write spec.json and start the supervisor, handing it the locked ``lock_fd``."""
        work = self._work_dir(job_id)
        work.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCLOUD_")}
        spec_text = json.dumps(
            {"command": list(command), "env": {**env, **job_env}, "cwd": str(work)}
        )
        # 0600: the environment can hold the user's secrets.
        spec_fd = os.open(run_dir / "spec.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(spec_fd, "w") as spec_file:
            spec_file.write(spec_text)
        with (run_dir / "runner.log").open("ab") as runner_log:
            runner = subprocess.Popen(
                # By path with -I: no package import, immune to the user's PYTHON* variables.
                [sys.executable, "-I", local_runner.__file__, str(run_dir), str(lock_fd)],
                stdin=subprocess.DEVNULL,
                stdout=runner_log,
                stderr=subprocess.STDOUT,
                env=env,  # the supervisor never sees the control plane's GPUCLOUD_* secrets
                start_new_session=True,  # survives the control plane; no Ctrl-C from its tty
                pass_fds=(lock_fd,),
            )
        return runner

    def _await_start(self, ref: str, run_dir: Path, runner: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while not (run_dir / "started").exists():
            if runner.poll() is not None or time.monotonic() > deadline:
                if runner.poll() is None:  # too slow: make sure it never starts late
                    runner.kill()
                    runner.wait()
                    self._kill_orphans(run_dir)
                why = "exited" if runner.returncode >= 0 else "was killed after the timeout"
                detail = _tail(run_dir / "runner.log") or "(runner.log is empty)"
                raise EngineError(f"allocation {ref}: the local supervisor {why}: {detail}")
            time.sleep(0.01)

    def _reap(self) -> None:
        with self._lock:
            for ref, runner in list(self._runners.items()):
                if runner.poll() is not None:
                    del self._runners[ref]

    @staticmethod
    def _supervised(run_dir: Path) -> bool:
        """Whether a supervisor holds the run's lock (probing takes and drops it otherwise)."""
        try:
            fd = os.open(run_dir / "lock", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also releases the lock if the probe got it
        return False

    @staticmethod
    def _exit_code(run_dir: Path) -> int | None:
        try:
            return int((run_dir / "exit_code").read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:  # written atomically, so this is corruption
            raise EngineError(f"{run_dir}: unreadable exit_code") from exc

    @staticmethod
    def _pgid(run_dir: Path) -> int | None:
        try:
            pgid = int((run_dir / "pgid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pgid if pgid > 1 else None

    def _kill_group(self, run_dir: Path) -> None:
        pgid = self._pgid(run_dir)
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    def _status(self, ref: EngineRef) -> RunStatus:
        try:
            run_dir = self._run_dir(ref)
        except EngineError:
            return RunStatus(RunPhase.LOST, message=LOST_NO_RUN)
        code = self._exit_code(run_dir)
        if code is not None:
            return self._exited(run_dir, code)
        if self._supervised(run_dir):
            return RunStatus(RunPhase.RUNNING)
        if not run_dir.is_dir():
            return RunStatus(RunPhase.LOST, message=LOST_NO_RUN)
        code = self._exit_code(run_dir)  # the supervisor may have finished since the first look
        if code is not None:
            return self._exited(run_dir, code)
        self._kill_orphans(run_dir)
        if not (run_dir / "started").exists():
            return RunStatus(RunPhase.LOST, message="the run never started (see runner.log)")
        return RunStatus(RunPhase.LOST, message=LOST_SUPERVISOR)

    @staticmethod
    def _exited(run_dir: Path, code: int) -> RunStatus:
        """The exit_code file is written once, as the command ends: its mtime is the end."""
        mtime = (run_dir / "exit_code").stat().st_mtime
        return RunStatus(RunPhase.EXITED, exit_code=code,
                         finished_at=datetime.fromtimestamp(mtime, UTC))

    def _kill_orphans(self, run_dir: Path) -> None:
        """Nothing may run unobserved: kill the command's group, once per run.

        Once, because after that the group number is free and could be reused by an unrelated
        process group; the ``lost`` marker (created exclusively) records that it was done.
        """
        try:
            os.close(os.open(run_dir / "lost", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return
        self._kill_group(run_dir)

    def status(self, refs: Sequence[EngineRef]) -> dict[EngineRef, RunStatus]:
        self._reap()
        return {ref: self._launch_status(ref) for ref in refs}

    def _launch_status(self, ref: EngineRef) -> RunStatus:
        replicas = self._replicas(ref)
        if len(replicas) == 1:
            return self._status(ref)
        gang = combine([self._status(r) for r in replicas])
        if gang.tear_down:
            self._tear_down(ref, replicas)
        return gang.status

    def _tear_down(self, ref: EngineRef, replicas: list[str]) -> None:
        """SIGTERM the survivors of a failed replica, SIGKILL them once the grace is over."""
        marker = self.data_dir / "launches" / f"{ref}.teardown"
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            force = False
        except FileExistsError:
            force = time.time() - marker.stat().st_mtime > self._teardown_grace_s
        for replica in replicas:
            self._signal(replica, force)

    def stop(self, ref: EngineRef, force: bool = False) -> None:
        """Signal every replica's process group (SIGTERM, or SIGKILL with ``force``)."""
        for replica in self._replicas(ref):
            self._signal(replica, force)

    def _signal(self, ref: EngineRef, force: bool) -> None:
        """Signal one run's process group; never waits."""
        try:
            run_dir = self._run_dir(ref)
        except EngineError:
            return
        # Only while a supervisor watches the group: otherwise the number may be reused.
        if self._exit_code(run_dir) is not None or not self._supervised(run_dir):
            return
        pgid = self._pgid(run_dir)
        if pgid is None:
            return
        try:
            os.killpg(pgid, signal.SIGKILL if force else signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise EngineError(f"cannot signal run {ref}: {exc}") from exc

    def shell(self, ref: EngineRef) -> ShellContext:
        """A process with the run's own environment, in its HOME (the instance's home)."""
        spec_file = self._run_dir(ref) / "spec.json"
        try:
            spec = json.loads(spec_file.read_text())
        except (OSError, ValueError) as err:
            raise EngineError(f"run {ref}: cannot read its environment: {err}") from err
        env = {str(k): str(v) for k, v in spec["env"].items()}
        env.setdefault("TERM", "xterm-256color")
        shell = env.get("SHELL") or "/bin/bash"
        if not Path(shell).exists():
            shell = "/bin/sh"
        cwd = env.get("HOME") or str(spec["cwd"])
        # A login shell's /etc/profile resets PATH: in an image, an interactive non-login shell
        # keeps the image's venv first on PATH, as the instance's own process has it.
        flag = "-i" if "VIRTUAL_ENV" in env else "-l"
        return ShellContext([shell, flag] if shell.endswith("bash") else [shell], env, cwd)

    def logs(self, ref: EngineRef, follow: bool = False, offset: int = 0) -> Iterator[bytes]:
        """The run's output from byte ``offset``; with ``follow``, until the run has ended."""
        try:
            path = self._run_dir(ref) / "output.log"
        except EngineError:
            return
        yield from read_output(
            path, offset, follow, lambda: self._status(ref).phase is not RunPhase.RUNNING
        )
