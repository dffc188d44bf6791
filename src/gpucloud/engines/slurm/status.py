"""What a launch's Slurm job and its run directory add up to, as a RunStatus: pure.

Two witnesses, each outliving the other in some case: Slurm's job record (squeue keeps it for
MinJobAge after the end; the engine copies a terminal one into ``final.json``), and the files the
batch script writes in the run directory (``exit_code`` when the whole launch ended, ``exit-<rank>``
per node). A job that finished while nobody watched still reports its real code from the files; a
node failure is told by Slurm's state (NODE_FAIL), which the files cannot know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gpucloud.core.runs import RunPhase, RunStatus
from gpucloud.engines.slurm.parse import SlurmJob, exit_code_of

PENDING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                            "RESV_DEL_HOLD"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING",
                            "RESIZING", "STOPPED"})
# Terminal states that are the platform's fault, not the job's: the run may be restarted.
PLATFORM_FAULTS = frozenset({"NODE_FAIL", "BOOT_FAIL", "PREEMPTED"})
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY",
                             "DEADLINE", "SPECIAL_EXIT"}) | PLATFORM_FAULTS

_WHY = {
    "NODE_FAIL": "a node failed under it",
    "BOOT_FAIL": "its nodes failed to boot",
    "PREEMPTED": "Slurm preempted it",
    "TIMEOUT": "Slurm's time limit ended it",
    "OUT_OF_MEMORY": "it ran out of memory",
    "CANCELLED": "it was cancelled in Slurm",
    "DEADLINE": "Slurm's deadline ended it",
}


@dataclass(frozen=True)
class ExitFile:
    code: int
    mtime: float  # written once, as the command ended: its mtime is the end


@dataclass(frozen=True)
class RunFiles:
    """What the batch script left in the run directory."""

    started: bool = False
    batch_exit: ExitFile | None = None  # the launch ended (written by the batch script)
    rank_exits: Mapping[int, ExitFile] = field(default_factory=dict)


def is_terminal(job: SlurmJob) -> bool:
    return job.state in TERMINAL_STATES


def _first_failure(files: RunFiles) -> ExitFile | None:
    failed = [e for e in files.rank_exits.values() if e.code != 0]
    return min(failed, key=lambda e: e.mtime) if failed else None


def _at(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


def exited_from_files(files: RunFiles) -> RunStatus | None:
    """The launch's end as the files tell it, or None while the batch script has not ended.
    A gang reports its first failing node's code (the others were torn down because of it)."""
    if files.batch_exit is None:
        return None
    first = _first_failure(files)
    code = first.code if first is not None else files.batch_exit.code
    return RunStatus(RunPhase.EXITED, exit_code=code, finished_at=_at(files.batch_exit.mtime))


def run_status(job: SlurmJob | None, files: RunFiles, slurm_job_id: int | None) -> RunStatus:
    """``job`` is Slurm's record (from squeue, or the engine's copy of its terminal one)."""
    if job is None:
        from_files = exited_from_files(files)
        if from_files is not None:
            return from_files
        what = f"Slurm job {slurm_job_id}" if slurm_job_id is not None else "its Slurm job"
        return RunStatus(
            RunPhase.LOST,
            message=f"Slurm no longer knows {what} and it left no exit status"
            + (" (it had started)" if files.started else " (it never started)"),
        )
    if job.state in PENDING_STATES:
        return RunStatus(RunPhase.PENDING, message=f"Slurm: {job.state.lower()} ({job.reason})")
    if job.state not in TERMINAL_STATES:  # RUNNING_STATES, or a state this code does not know
        return RunStatus(RunPhase.RUNNING if files.started or job.state in RUNNING_STATES
                         else RunPhase.PENDING)
    why = _WHY.get(job.state, "")
    where = f" on {','.join(job.nodes)}" if job.nodes else ""
    message = f"Slurm job {job.job_id} {job.state}{where}" + (f": {why}" if why else "")
    from_files = exited_from_files(files)
    if from_files is not None and job.state not in PLATFORM_FAULTS:
        return RunStatus(RunPhase.EXITED, exit_code=from_files.exit_code,
                         finished_at=from_files.finished_at, message=message)
    first = _first_failure(files)
    if first is not None:
        code = first.code
    elif job.wait_status is not None:
        code = exit_code_of(job.wait_status)
    elif from_files is not None and from_files.exit_code is not None:
        code = from_files.exit_code
    else:
        code = 1  # Slurm says it ended and nothing says how: not a success
    ended = from_files.finished_at if from_files is not None else _at(job.end_time)
    return RunStatus(RunPhase.EXITED, exit_code=code, finished_at=ended, message=message,
                     platform_fault=job.state in PLATFORM_FAULTS)
