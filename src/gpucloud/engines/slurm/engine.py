"""The Slurm engine: gpucloud places, Slurm executes. One launch is one Slurm batch job.

The ref of a launch is its launch id (rank 0's allocation id), as on the local engine; the Slurm
job id is found in the run directory (``runs/<launch>/slurm_job_id``) or, after a crash between
sbatch and that write, by the job's name (``gpucloud-<launch>``). So launching the same launch
again finds its job and never submits a second one, and a restarted control plane re-adopts
every job it had. Status is one job listing per poll for all refs (cached for
``snapshot_max_age_s``, shared by log followers), plus the run directories of the jobs Slurm
says have ended or no longer knows.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from gpucloud.core.errors import EngineError
from gpucloud.core.faults import SignalKind
from gpucloud.engines.base import (
    BurnInResult,
    EngineRef,
    FaultSignal,
    LaunchSpec,
    NodeReport,
    RunPhase,
    RunStatus,
    ShellContext,
)
from gpucloud.engines.fault_log import FaultLog
from gpucloud.engines.logfile import read_output
from gpucloud.engines.slurm.api import SlurmApi, SlurmUnavailable
from gpucloud.engines.slurm.cli import command_env
from gpucloud.engines.slurm.parse import (
    SlurmJob,
    node_gpus,
    node_report,
    parse_job,
    parse_node,
)
from gpucloud.engines.slurm.rundir import RunDirs, safe_id, write_file
from gpucloud.engines.slurm.script import env_file, launch_of, render
from gpucloud.engines.slurm.shell import shell_argv
from gpucloud.engines.slurm.status import RunFiles, is_terminal, run_status
from gpucloud.engines.storage_dirs import storage_root

log = logging.getLogger("gpucloud.engines.slurm")
DRILL_REASON = "gpucloud drill: heartbeat loss"

_FINAL_MEMO = 20_000  # ended runs remembered in memory (their status never changes)


class Snapshot:
    """One job listing. Slurm holds every job for ``MinJobAge`` (other users' too), far more
    than a status poll asks about: a job is parsed when it is looked up, not when listed."""

    def __init__(self, raw_jobs: Sequence[Mapping[str, object]], taken_at: float) -> None:
        self.taken_at = taken_at
        self._raw: dict[int, Mapping[str, object]] = {}
        self._launches: dict[str, list[int]] = {}  # gpucloud's jobs, by the launch in their name
        self._parsed: dict[int, SlurmJob] = {}
        for raw in raw_jobs:
            try:
                job_id = int(str(raw["job_id"]))
            except (KeyError, ValueError):
                parse_job(raw)  # raises the parser's own error for a job without an id
                continue
            self._raw[job_id] = raw
            launch = launch_of(str(raw.get("name") or ""))
            if launch is not None:
                self._launches.setdefault(launch, []).append(job_id)

    def job(self, job_id: int) -> SlurmJob | None:
        job = self._parsed.get(job_id)
        if job is None and job_id in self._raw:
            job = self._parsed[job_id] = parse_job(self._raw[job_id])
        return job

    def of_launch(self, launch: str) -> SlurmJob | None:
        """The Slurm job of a launch. Two for one launch would be a bug; prefer one not over."""
        found: SlurmJob | None = None
        for job_id in self._launches.get(launch, ()):
            job = self.job(job_id)
            if found is None or (job is not None and is_terminal(found)
                                 and not is_terminal(job)):
                found = job
        return found

    def launches(self) -> list[str]:
        return list(self._launches)


class SlurmEngine:
    """See the module docstring; ``rundir`` documents the files."""

    name = "slurm"

    def __init__(
        self,
        api: SlurmApi,
        shared_dir: Path,
        *,
        partition: str | None = None,
        default_gpu_model: str | None = None,
        time_margin_s: int = 300,
        snapshot_max_age_s: float = 0.5,
        unavailable_grace_s: float = 60.0,
        job_env: Mapping[str, str] | None = None,
        slurm_conf: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.dirs = RunDirs(shared_dir)
        self.partition = partition
        self.default_gpu_model = default_gpu_model
        self.time_margin_s = time_margin_s
        self.snapshot_max_age_s = snapshot_max_age_s
        self.unavailable_grace_s = unavailable_grace_s
        # What sbatch exports to the job besides the replica's own variables.
        self.job_env = dict(job_env) if job_env is not None else command_env(None)
        # The config the Slurm commands this engine runs itself (srun for shells) read.
        self.slurm_conf = slurm_conf
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._job_ids: dict[str, int] = {}
        self._final: OrderedDict[str, RunStatus] = OrderedDict()
        self._last: dict[str, RunStatus] = {}
        self._gres: dict[str, tuple[str | None, ...]] = {}
        self._nodes: list[NodeReport] = []
        self._nodes_at: float | None = None
        self._warned_unavailable = False
        self._faults = FaultLog(shared_dir / "faults.jsonl")

    # -- nodes ---------------------------------------------------------------------------------

    def nodes(self) -> list[NodeReport]:
        """Slurm's nodes (of the partition, if one is set). While slurmctld does not answer,
        the last reports stand for ``unavailable_grace_s``, then the error goes up."""
        try:
            raw = self.api.nodes()
        except SlurmUnavailable as err:
            with self._lock:
                age = None if self._nodes_at is None else self._monotonic() - self._nodes_at
                if age is not None and age < self.unavailable_grace_s:
                    self._warn(f"nodes: {err}; using the reports of {age:.0f}s ago")
                    return list(self._nodes)
            raise
        parsed = [parse_node(r) for r in raw]
        if self.partition is not None:
            parsed = [n for n in parsed if self.partition in n.partitions]
        reports = [node_report(n, self.default_gpu_model) for n in parsed]
        with self._lock:
            self._gres = {n.name: node_gpus(n).types for n in parsed}
            self._nodes, self._nodes_at = reports, self._monotonic()
            self._warned_unavailable = False
        return reports

    def drain(self, node_id: str, reason: str) -> None:
        self.api.update_node(node_id, "drain", reason)

    def resume(self, node_id: str) -> None:
        try:
            self.api.update_node(node_id, "resume")
        except SlurmUnavailable:
            raise
        except EngineError as err:
            if "invalid node state" not in str(err).lower():  # not drained (any more)
                raise

    def _warn(self, message: str) -> None:
        if not self._warned_unavailable:
            log.warning("Slurm does not answer: %s", message)
            self._warned_unavailable = True

    # -- launching -----------------------------------------------------------------------------

    def checkpoint_dir(self, job_id: str) -> str:
        return str(self.dirs.checkpoint_dir(job_id))

    def launch(self, spec: LaunchSpec) -> EngineRef:
        """Submit the launch as one Slurm job, once. Launching it again (after a crash, at any
        line) finds the job by the run directory or by name and submits nothing."""
        ref = safe_id("launch id", spec.launch_id)
        paths = self.dirs.paths(ref, spec.job_id)
        try:
            paths.run_dir.mkdir()
            fresh = True
        except FileExistsError:
            fresh = False
        with self.dirs.locked(paths.run_dir):
            if not fresh and self._find_job(ref) is not None:
                return ref
            rendered = render(spec, paths, self._gres_types([r.node_id for r in spec.replicas]),
                              partition=self.partition, time_margin_s=self.time_margin_s,
                              read_only_dirs=[storage_root(self) / "datasets"])
            paths.work_dir.mkdir(parents=True, exist_ok=True)
            # Plain writes: nothing reads these files before sbatch below, and a retry after a
            # crash rewrites them all before it submits.
            for rank, text in rendered.env_files.items():
                write_file(paths.env_file(rank), text, 0o600)  # the user's secrets
            write_file(paths.task_script, rendered.task_script)
            write_file(paths.batch_script, rendered.submission.script)
            job_id = self.api.submit(rendered.submission, self.job_env)
            self.dirs.write_job_id(paths.run_dir, job_id)
        with self._lock:
            self._job_ids[ref] = job_id
        return ref

    def _gres_types(self, nodes: Sequence[str]) -> dict[str, tuple[str | None, ...]]:
        with self._lock:
            known = dict(self._gres)
        if any(n not in known for n in nodes):
            self.nodes()
            with self._lock:
                known = dict(self._gres)
        return known

    def _find_job(self, ref: str) -> int | None:
        """The Slurm job of a launch already tried: recorded, or found by name in Slurm."""
        with self._lock:
            if ref in self._job_ids:
                return self._job_ids[ref]
        run_dir = self.dirs.run_dir(ref)
        job_id = self.dirs.read_job_id(run_dir)
        if job_id is None:
            job = self._fresh_snapshot().of_launch(ref)
            if job is None:
                return None
            job_id = job.job_id
            log.info("launch %s: re-adopted Slurm job %s", ref, job_id)
            self.dirs.write_job_id(run_dir, job_id)
        with self._lock:
            self._job_ids[ref] = job_id
        return job_id

    def adopt(self) -> int:
        """At start: record the Slurm job of every launch whose id was never written (a crash
        right after sbatch). Returns how many gpucloud jobs Slurm holds."""
        snapshot = self._fresh_snapshot()
        launches = snapshot.launches()
        for launch in launches:
            job = snapshot.of_launch(launch)
            try:
                run_dir = self.dirs.run_dir(launch)
            except EngineError:
                continue
            if job is not None and run_dir.is_dir() and self.dirs.read_job_id(run_dir) is None:
                log.info("launch %s: re-adopted Slurm job %s", launch, job.job_id)
                self.dirs.write_job_id(run_dir, job.job_id)
        return len(launches)

    # -- status --------------------------------------------------------------------------------

    def _fresh_snapshot(self) -> Snapshot:
        raw = self.api.jobs()
        snapshot = Snapshot(raw, self._monotonic())
        with self._lock:
            self._snapshot = snapshot
        return snapshot

    def _current_snapshot(self) -> tuple[Snapshot, bool]:
        with self._lock:
            snapshot = self._snapshot
        if snapshot is not None and self._monotonic() - snapshot.taken_at < self.snapshot_max_age_s:
            return snapshot, False
        return self._fresh_snapshot(), True

    def status(self, refs: Sequence[EngineRef]) -> dict[EngineRef, RunStatus]:
        """One job listing for all refs. While Slurm does not answer, refs seen before keep
        their last status (they are not lost: Slurm keeps its jobs across a restart)."""
        with self._lock:
            result = {ref: self._final[ref] for ref in refs if ref in self._final}
        todo = [ref for ref in refs if ref not in result]
        if not todo:
            return result
        try:
            snapshot, fresh = self._current_snapshot()
            statuses = {ref: self._status_one(ref, snapshot) for ref in todo}
            lost = [ref for ref, s in statuses.items() if s.phase is RunPhase.LOST]
            if lost and not fresh:  # a cached listing may predate the submission: look again
                snapshot = self._fresh_snapshot()
                statuses.update({ref: self._status_one(ref, snapshot) for ref in lost})
        except SlurmUnavailable as err:
            with self._lock:
                known = {ref: self._last[ref] for ref in todo if ref in self._last}
            if len(known) < len(todo):
                raise
            self._warn(f"status: {err}; keeping the last known status of {len(todo)} runs")
            result.update(known)
            return result
        with self._lock:
            self._warned_unavailable = False
            for ref, status in statuses.items():
                if status.phase in (RunPhase.EXITED, RunPhase.LOST):
                    self._final[ref] = status
                    self._last.pop(ref, None)
                    if len(self._final) > _FINAL_MEMO:
                        self._final.popitem(last=False)
                else:
                    self._last[ref] = status
        result.update(statuses)
        return result

    def _status_one(self, ref: EngineRef, snapshot: Snapshot) -> RunStatus:
        try:
            run_dir = self.dirs.run_dir(ref)
        except EngineError:
            return RunStatus(RunPhase.LOST, message=f"no such launch {ref!r}")
        with self._lock:
            job_id = self._job_ids.get(ref)
        if job_id is None:
            job_id = self.dirs.read_job_id(run_dir)
            found = snapshot.of_launch(ref)
            if job_id is None and found is not None:
                job_id = found.job_id
                self.dirs.write_job_id(run_dir, job_id)
            if job_id is None:
                if not run_dir.is_dir():
                    return RunStatus(RunPhase.LOST, message=f"no such launch {ref!r}")
                return RunStatus(RunPhase.LOST, message=f"launch {ref} was never submitted "
                                 "to Slurm")
            with self._lock:
                self._job_ids[ref] = job_id
        job = snapshot.job(job_id)
        if job is not None and not is_terminal(job):
            return run_status(job, RunFiles(started=self.dirs.started(run_dir)), job_id)
        if job is None:
            job = self.dirs.read_final(run_dir)
        elif not (run_dir / "final.json").exists():
            self.dirs.write_final(run_dir, job)  # outlives squeue's MinJobAge
        return run_status(job, self.dirs.read_files(run_dir), job_id)

    # -- stopping ------------------------------------------------------------------------------

    def stop(self, ref: EngineRef, force: bool = False) -> None:
        """SIGTERM to the job's processes (the command's; the wrappers record its exit code),
        or with ``force`` SIGKILL and a cancel. A job Slurm has not started is cancelled."""
        try:
            job_id = self._find_job(safe_id("engine ref", ref))
        except EngineError:
            return
        if job_id is None:
            return
        with self._lock:
            if ref in self._final:
                return
            last = self._last.get(ref)
        if force:
            self.api.signal(job_id, "KILL")
            self.api.cancel(job_id)
        elif last is None or last.phase is RunPhase.PENDING:
            self.api.cancel(job_id)
        else:
            self.api.signal(job_id, "TERM")

    # -- interactive shells ---------------------------------------------------------------------

    def shell(self, ref: EngineRef) -> ShellContext:
        """The command (and its environment) that opens a shell inside the launch's running
        job: an overlapping ``srun --pty`` step (``shell.py``). Needs Slurm's client commands
        on the control plane's host, which the CLI API needs too."""
        env = command_env(self.slurm_conf)
        env["PATH"] = self.job_env.get("PATH", env.get("PATH", ""))
        if shutil.which("srun", path=env["PATH"]) is None:
            raise EngineError("interactive shells on Slurm need the srun command on the "
                              "control plane's host; install Slurm's client (slurm-client)")
        job_id = self._find_job(safe_id("engine ref", ref))
        if job_id is None:
            raise EngineError(f"launch {ref} was never submitted to Slurm")
        env.setdefault("TERM", "xterm-256color")
        rank0_env = env_file(self.dirs.run_dir(ref), 0)
        return ShellContext(shell_argv(job_id, rank0_env), env, str(rank0_env.parent))

    # -- logs ----------------------------------------------------------------------------------

    def _ended(self, ref: EngineRef) -> bool:
        try:
            phase = self.status([ref])[ref].phase
        except SlurmUnavailable:
            return False
        return phase in (RunPhase.EXITED, RunPhase.LOST)

    def logs(self, ref: EngineRef, follow: bool = False, offset: int = 0) -> Iterator[bytes]:
        """Rank 0's output from byte ``offset``; with ``follow``, until the run has ended."""
        try:
            path = self.dirs.run_dir(ref) / "rank-0.log"
        except EngineError:
            return
        yield from read_output(path, offset, follow, lambda: self._ended(ref))

    # -- health signals (the self-healing contract) ----------------------------------------------

    def faults(self, after: int) -> list[FaultSignal]:
        """Slurm has no stream of Xid/ECC events to give: its node states (DOWN, DRAIN,
        NOT_RESPONDING) reach gpucloud as node health in ``nodes()``. What is here are the
        drills' injected faults (and whatever a node agent appends to the same log)."""
        return self._faults.after(after)

    def inject_fault(self, node_id: str, kind: SignalKind, device_index: int | None,
                     code: int | None, duration_s: float) -> None:
        """A drill. An Xid or ECC fault enters the fault log as a real one would; a heartbeat
        loss takes the node DOWN in Slurm (which kills its jobs, as losing the node does) and
        resumes it after ``duration_s``."""
        if node_id not in {n.id for n in self._nodes or self.nodes()}:
            raise EngineError(f"Slurm has no node {node_id!r}")
        if kind is not SignalKind.HEARTBEAT_LOSS:
            self._faults.append(node_id, kind, datetime.now(UTC), device_index, code,
                                "injected (drill)")
            return
        self.api.update_node(node_id, "down", DRILL_REASON)
        timer = threading.Timer(duration_s, self._end_drill, args=(node_id,))
        timer.daemon = True
        timer.start()

    def _end_drill(self, node_id: str) -> None:
        try:
            self.api.update_node(node_id, "resume")
        except (EngineError, SlurmUnavailable) as err:
            log.warning("node %s: could not resume it after the drill: %s", node_id, err)

    def burn_in(self, node_id: str, device_index: int | None) -> BurnInResult:
        """No hardware probe from the control plane (Slurm's HealthCheckProgram runs on the
        nodes): passes when Slurm reports the node usable."""
        try:
            reports = {n.id: n for n in self.nodes()}
        except SlurmUnavailable as err:
            return BurnInResult(False, f"Slurm does not answer: {err}")
        report = reports.get(node_id)
        if report is None:
            return BurnInResult(False, f"Slurm does not report node {node_id!r}")
        if not report.healthy:
            return BurnInResult(False, report.message)
        return BurnInResult(True, "Slurm reports the node usable (no hardware probe on Slurm)")
