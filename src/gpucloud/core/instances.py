"""Interactive GPU instances: the state machine, what the controller does next, and the idle
policy. Pure: no database, no clock, no I/O.

An instance is a product object; while it runs, a job (``Workload.INSTANCE``) holds its GPUs, so
the scheduler, launcher, metering and self-healing drive it like any job. The user states what
they want (``desired``: running, stopped, deleted); the controller compares that with the current
job and converges, one step per pass (level-triggered).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gpucloud.core.errors import IllegalTransition, InvalidRequest
from gpucloud.core.jobspec import JobSpec, parse_job_spec
from gpucloud.core.quantities import parse_memory_mib
from gpucloud.core.states import JobState

DEFAULT_DISK_GIB = 50
MAX_DISK_GIB = 64 * 1024
DEFAULT_INSTANCE_CPUS = 2.0
DEFAULT_INSTANCE_MEMORY_MIB = 8 * 1024


class InstanceState(StrEnum):
    PENDING = "PENDING"  # wants to run; its job waits for admission or GPUs
    STARTING = "STARTING"  # its job is placed and being launched
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"  # its job was asked to end (stop, delete, or a switch of mode)
    STOPPED = "STOPPED"  # no job: GPUs released, disk kept (billed as storage)
    FAILED = "FAILED"  # its job ended on its own; the disk is kept, start it again or delete
    DELETED = "DELETED"

    @property
    def holds_job(self) -> bool:
        return self in HOLDS_JOB


HOLDS_JOB = frozenset(
    {InstanceState.PENDING, InstanceState.STARTING, InstanceState.RUNNING, InstanceState.STOPPING}
)

_I = InstanceState
TRANSITIONS: Mapping[InstanceState, frozenset[InstanceState]] = {
    _I.PENDING: frozenset({_I.STARTING, _I.RUNNING, _I.STOPPING, _I.STOPPED, _I.FAILED}),
    # back to PENDING when self-healing requeued the job after a platform fault
    _I.STARTING: frozenset({_I.PENDING, _I.RUNNING, _I.STOPPING, _I.STOPPED, _I.FAILED}),
    _I.RUNNING: frozenset({_I.PENDING, _I.STARTING, _I.STOPPING, _I.STOPPED, _I.FAILED}),
    # to PENDING when it was stopped to start again in another mode (idle reclamation)
    _I.STOPPING: frozenset({_I.PENDING, _I.STOPPED, _I.DELETED}),
    _I.STOPPED: frozenset({_I.PENDING, _I.DELETED}),
    _I.FAILED: frozenset({_I.PENDING, _I.DELETED}),
    _I.DELETED: frozenset(),
}


def check_instance_transition(instance_id: str, current: InstanceState,
                              target: InstanceState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(instance_id, current.value, target.value)


class Desired(StrEnum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    DELETED = "DELETED"


class InstanceReason(StrEnum):
    CREATED = "CREATED"
    WAITING = "WAITING"  # the job waits (for funds, quota or GPUs: its message says which)
    LAUNCHING = "LAUNCHING"
    STARTED = "STARTED"
    REQUEUED = "REQUEUED"  # a platform fault: the job restarts on healthy hardware
    STOP_REQUESTED = "STOP_REQUESTED"
    STOPPED_BY_USER = "STOPPED_BY_USER"
    START_REQUESTED = "START_REQUESTED"
    DELETE_REQUESTED = "DELETE_REQUESTED"
    DELETED_BY_USER = "DELETED_BY_USER"
    IDLE_RECLAIMED = "IDLE_RECLAIMED"
    SWITCHING_MODE = "SWITCHING_MODE"
    JOB_ENDED = "JOB_ENDED"  # the instance's process ended on its own
    JOB_FAILED = "JOB_FAILED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"


# --- what a user asks for ----------------------------------------------------------------------


class InstanceSpec(BaseModel):
    """An instance request. The compute fields are validated by ``JobSpec``'s own rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    gpus: Annotated[int, Field(ge=0)] = 1
    gpu_type: str | None = None
    cpus: float = DEFAULT_INSTANCE_CPUS
    memory_mib: int = DEFAULT_INSTANCE_MEMORY_MIB
    disk_gib: Annotated[int, Field(ge=1, le=MAX_DISK_GIB)] = DEFAULT_DISK_GIB
    image: str | None = None
    volumes: list[str] = Field(default_factory=list)  # NAME:/path (core.volumes)
    jupyter: bool = False

    @model_validator(mode="before")
    @classmethod
    def _human_sizes(cls, data: Any) -> Any:
        """``memory: 16G`` and ``disk: 100G`` as in task files."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        try:
            if "memory" in data:
                data["memory_mib"] = parse_memory_mib(data.pop("memory"))
            if "disk" in data:
                data["disk_gib"] = max(1, -(-parse_memory_mib(data.pop("disk")) // 1024))
        except InvalidRequest as err:
            raise ValueError(str(err)) from err
        return data

    @model_validator(mode="after")
    def _compute_is_a_valid_job(self) -> InstanceSpec:
        self.job_spec(["true"], {}, no_gpu=False)  # the job's rules, one place
        return self

    @field_validator("volumes")
    @classmethod
    def _check_volumes(cls, value: list[str]) -> list[str]:
        if not value:
            return value
        from gpucloud.core.volumes import parse_mounts  # part A's volumes (issue 9)

        try:
            return [str(m) for m in parse_mounts(value)]
        except InvalidRequest as err:
            raise ValueError(str(err)) from err

    def job_spec(self, command: list[str], env: Mapping[str, str], no_gpu: bool) -> JobSpec:
        """The job that runs the instance now (no GPUs in no-GPU mode)."""
        data: dict[str, Any] = {
            "command": command,
            "name": self.name,
            "gpus": 0 if no_gpu else self.gpus,
            "gpu_type": None if no_gpu else self.gpu_type,
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            # In an image, ``pip install`` goes to the instance's disk (~/.local), never into
            # the node's shared venv; ``gpucloud image save`` copies it from there.
            "env": {**env, "PIP_USER": "1"} if self.image else dict(env),
            "image": self.image,
            "volumes": list(self.volumes),  # mounted by every run (core/volumes.py)
        }
        try:
            return parse_job_spec(data)
        except InvalidRequest as err:
            raise ValueError(str(err)) from err


def parse_instance_spec(data: Any) -> InstanceSpec:
    from pydantic import ValidationError

    from gpucloud.core.jobspec import describe_validation_error

    try:
        return InstanceSpec.model_validate(data)
    except ValidationError as err:
        raise InvalidRequest(describe_validation_error(list(err.errors()))) from err


# --- what the controller does next ------------------------------------------------------------


@dataclass(frozen=True)
class JobView:
    state: JobState
    reason: str
    message: str
    exit_code: int | None


@dataclass(frozen=True)
class Step:
    """One pass's change: a new state (with why), and whether to start or stop the job."""

    state: InstanceState | None = None
    reason: InstanceReason | None = None
    message: str = ""
    create_job: bool = False
    stop_job: bool = False


_JOB_TO_INSTANCE = {
    JobState.PENDING: InstanceState.PENDING,
    JobState.QUEUED: InstanceState.PENDING,
    JobState.SCHEDULED: InstanceState.STARTING,
    JobState.STARTING: InstanceState.STARTING,
    JobState.RUNNING: InstanceState.RUNNING,
}
_WHY = {
    InstanceState.PENDING: InstanceReason.WAITING,
    InstanceState.STARTING: InstanceReason.LAUNCHING,
    InstanceState.RUNNING: InstanceReason.STARTED,
}


def next_step(desired: Desired, state: InstanceState, job: JobView | None) -> Step:
    """Compare what the user wants with the instance's current job (None: it has none)."""
    if state is InstanceState.DELETED:
        return Step()
    alive = job is not None and not job.state.terminal
    if desired is Desired.RUNNING:
        if state in (InstanceState.STOPPED, InstanceState.FAILED):
            return Step()  # stable until the user starts it (which makes it PENDING)
        if not alive:
            if state is InstanceState.PENDING and job is None:
                return Step(create_job=True)
            if state is InstanceState.STOPPING:  # stopped on purpose, to start again
                return Step(InstanceState.PENDING, InstanceReason.SWITCHING_MODE,
                            create_job=True)
            assert job is not None
            return _ended_on_its_own(job)
        assert job is not None
        target = _JOB_TO_INSTANCE[job.state]
        if state is InstanceState.STOPPING:
            return Step(stop_job=True)  # a switch of mode in progress: keep asking
        if target is state:
            return Step()
        reason = _WHY[target]
        if target is InstanceState.PENDING and state is not InstanceState.PENDING:
            reason = InstanceReason.REQUEUED
        return Step(target, reason, job.message)
    # desired STOPPED or DELETED
    if alive:
        if state is InstanceState.STOPPING:
            return Step(stop_job=True)
        return Step(InstanceState.STOPPING, InstanceReason.STOP_REQUESTED, stop_job=True)
    if desired is Desired.DELETED:
        return Step(InstanceState.DELETED, InstanceReason.DELETED_BY_USER)
    if state is InstanceState.STOPPED:
        return Step()
    return Step(InstanceState.STOPPED, InstanceReason.STOPPED_BY_USER)


def _ended_on_its_own(job: JobView) -> Step:
    if job.reason in ("INSUFFICIENT_FUNDS", "BUDGET_EXHAUSTED"):
        return Step(InstanceState.STOPPED, InstanceReason.INSUFFICIENT_FUNDS,
                    f"stopped: {job.message or 'the wallet ran out'}; top up and start it again")
    if job.state is JobState.FAILED:
        code = f" with exit code {job.exit_code}" if job.exit_code is not None else ""
        return Step(InstanceState.FAILED, InstanceReason.JOB_FAILED,
                    f"its process ended{code} ({job.reason}): {job.message}".rstrip(": "))
    return Step(InstanceState.STOPPED, InstanceReason.JOB_ENDED,
                f"its process ended ({job.reason}) {job.message}".strip())


# --- idle reclamation -------------------------------------------------------------------------


class IdleAction(StrEnum):
    NO_GPU = "no-gpu"  # restart it without GPUs, at the CPU price
    STOP = "stop"


@dataclass(frozen=True)
class IdlePolicy:
    """GPU utilisation below ``below_pct`` for ``idle_s``: a warning; ``grace_s`` later, the
    action (unless it got busy meanwhile)."""

    below_pct: int
    idle_s: int
    grace_s: int
    action: IdleAction

    def __post_init__(self) -> None:
        if not 1 <= self.below_pct <= 100:
            raise InvalidRequest("below_pct is a utilisation in percent, 1-100", "below_pct")
        if self.idle_s < 60:
            raise InvalidRequest("idle time is at least one minute", "idle_s")
        if self.grace_s < 0:
            raise InvalidRequest("grace cannot be negative", "grace_s")


@dataclass(frozen=True)
class IdleStep:
    low_since: datetime | None
    warn: bool = False
    reclaim: bool = False


def idle_step(policy: IdlePolicy, utilisation_pct: int | None, low_since: datetime | None,
              warned: bool, now: datetime) -> IdleStep:
    """One look at a running GPU instance. No reading (``None``): never reclaimed on a guess."""
    if utilisation_pct is None or utilisation_pct >= policy.below_pct:
        return IdleStep(low_since=None)
    since = low_since or now
    idle_for = now - since
    if idle_for >= timedelta(seconds=policy.idle_s + policy.grace_s) and warned:
        return IdleStep(since, reclaim=True)
    if idle_for >= timedelta(seconds=policy.idle_s) and not warned:
        return IdleStep(since, warn=True)
    return IdleStep(since)


def saved_minor(rate_per_hour_minor: int, seconds: int) -> int:
    """What reclamation saved over ``seconds``: the hourly price difference, pro rata, rounded
    down (a saving is never overstated)."""
    return max(0, rate_per_hour_minor) * max(0, seconds) // 3600


# --- what runs inside ---------------------------------------------------------------------------


def jupyter_base_url(instance_id: str) -> str:
    """Where the control plane's proxy serves the instance's Jupyter (and Jupyter thinks it is)."""
    return f"/v1/instances/{instance_id}/jupyter/"


def instance_command(instance_id: str, jupyter: bool, python: str, home: str) -> list[str]:
    """The instance's main process: a Jupyter server on a free local port (it writes the port
    to its runtime file, where the proxy reads it), or a process that only keeps it alive."""
    if not jupyter:
        return ["/bin/sh", "-c", 'cd "$HOME" && exec sleep infinity']
    return [
        python, "-m", "jupyter_server",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",
        f"--ServerApp.base_url={jupyter_base_url(instance_id)}",
        f"--ServerApp.root_dir={home}",
        "--ServerApp.open_browser=False",
        # Reached only through the authenticated proxy, which sends the token.
        "--ServerApp.allow_remote_access=True",
        "--ServerApp.allow_origin=*",
        # It runs as whoever runs the engine's jobs; as root (a container, CI) it would
        # otherwise refuse to start. No effect for any other user.
        "--ServerApp.allow_root=True",
    ]
