"""Inference services: what a user asks for, the states of a service and of its replicas, the
autoscaling decision and the rollout plan. Pure: no database, no clock, no I/O.

A service is N replicas behind one route. Each replica is a job (``Workload.SERVICE_REPLICA``,
owned by the service), so the scheduler, launcher, metering and self-healing drive it like any
job. The controller reads the router's traffic figures, asks ``desired_replicas`` how many
replicas the load needs, and ``plan`` which replicas to start, drain and stop to get there (a
new version replica by replica: a new one must be READY before an old one is drained).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpucloud.core.errors import IllegalTransition, InvalidRequest
from gpucloud.core.jobspec import JobSpec, describe_validation_error, parse_job_spec
from gpucloud.core.quantities import parse_duration_s, parse_memory_mib

MAX_REPLICAS = 64
DEFAULT_SERVICE_CPUS = 1.0
DEFAULT_SERVICE_MEMORY_MIB = 2 * 1024
_READINESS = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")


# --- what a user asks for ----------------------------------------------------------------------


class ServiceSpec(BaseModel):
    """A service request: its replicas' compute (validated by ``JobSpec``'s rules), the command
    that serves HTTP on ``$PORT``, and how it scales.

    Exactly one of ``target_rps`` (requests per second per replica) and ``target_concurrency``
    (requests in flight per replica) drives the autoscaler; with neither, it keeps
    ``min_replicas`` (at least one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: Annotated[list[str], Field(min_length=1)]
    gpus: Annotated[int, Field(ge=0)] = 1
    gpu_type: str | None = None
    cpus: float = DEFAULT_SERVICE_CPUS
    memory_mib: int = DEFAULT_SERVICE_MEMORY_MIB
    image: str | None = None  # the replicas' image (as a job's); None: the node's own
    env: dict[str, str] = Field(default_factory=dict)
    min_replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS)] = 0
    max_replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = 1
    target_rps: Annotated[float | None, Field(gt=0)] = None
    target_concurrency: Annotated[float | None, Field(gt=0)] = None
    readiness_path: str = "/health"
    # No request for this long: every replica stops (only when min_replicas is 0).
    scale_to_zero_s: Annotated[int, Field(ge=1)] = 300
    # A scale-down happens only once every recommendation in this window is lower.
    stabilization_s: Annotated[int, Field(ge=0)] = 60

    @model_validator(mode="before")
    @classmethod
    def _human_fields(cls, data: Any) -> Any:
        """``command: "python serve.py"``, ``memory: 16G``, ``scale_to_zero: 5m``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        try:
            if isinstance(data.get("command"), str):
                data["command"] = ["/bin/sh", "-c", data["command"]]
            if "memory" in data:
                data["memory_mib"] = parse_memory_mib(data.pop("memory"))
            for human, field in (("scale_to_zero", "scale_to_zero_s"),
                                 ("stabilization", "stabilization_s")):
                if human in data:
                    data[field] = parse_duration_s(data.pop(human), human)
        except InvalidRequest as err:
            raise ValueError(str(err)) from err
        return data

    @field_validator("readiness_path")
    @classmethod
    def _check_readiness(cls, value: str) -> str:
        if not _READINESS.match(value):
            raise ValueError("the readiness path is a URL path starting with '/', e.g. /health")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is more than max_replicas "
                             f"({self.max_replicas})")
        if self.target_rps is not None and self.target_concurrency is not None:
            raise ValueError("give target_rps or target_concurrency, not both")
        if "PORT" in self.env:
            raise ValueError("PORT is set by the platform (each replica gets its own)")
        self.job_spec("check", 0)  # the job's rules, one place
        return self

    @property
    def autoscaled(self) -> bool:
        return self.target_rps is not None or self.target_concurrency is not None

    def job_spec(self, name: str, port: int) -> JobSpec:
        """One replica's job: the service's command with ``PORT`` in its environment."""
        data: dict[str, Any] = {
            "command": list(self.command),
            "name": name,
            "gpus": self.gpus,
            "gpu_type": self.gpu_type,
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "env": {**self.env, "PORT": str(port)},
        }
        if self.image is not None:  # the job's image rules (core/images.py) apply
            data["image"] = self.image
        try:
            return parse_job_spec(data)
        except InvalidRequest as err:
            raise ValueError(str(err)) from err


def replica_job_name(service_name: str, ordinal: int) -> str:
    """The name of a replica's job (within the job name's 63 characters)."""
    return f"{service_name[:48].rstrip('-._')}-r{ordinal}"


def parse_service_spec(data: Any) -> ServiceSpec:
    try:
        return ServiceSpec.model_validate(data)
    except ValidationError as err:
        raise InvalidRequest(describe_validation_error(list(err.errors()))) from err


# --- states ------------------------------------------------------------------------------------


class ServiceState(StrEnum):
    STARTING = "STARTING"  # wants replicas; none is READY yet
    RUNNING = "RUNNING"  # at least one replica is READY
    IDLE = "IDLE"  # scaled to zero: no replica, the next request starts one
    DELETING = "DELETING"  # its replicas are being stopped
    DELETED = "DELETED"


_S = ServiceState
SERVICE_TRANSITIONS: Mapping[ServiceState, frozenset[ServiceState]] = {
    _S.STARTING: frozenset({_S.RUNNING, _S.IDLE, _S.DELETING}),
    _S.RUNNING: frozenset({_S.STARTING, _S.IDLE, _S.DELETING}),
    _S.IDLE: frozenset({_S.STARTING, _S.RUNNING, _S.DELETING}),
    _S.DELETING: frozenset({_S.DELETED}),
    _S.DELETED: frozenset(),
}


class ReplicaState(StrEnum):
    STARTING = "STARTING"  # its job waits for GPUs or is being launched
    UNREADY = "UNREADY"  # running, but its readiness probe does not pass (yet, or any more)
    READY = "READY"  # in the router's rotation
    DRAINING = "DRAINING"  # out of the rotation; stopped once its requests have finished
    STOPPING = "STOPPING"  # its job was asked to end
    STOPPED = "STOPPED"
    FAILED = "FAILED"  # its job ended on its own


_R = ReplicaState
REPLICA_TRANSITIONS: Mapping[ReplicaState, frozenset[ReplicaState]] = {
    _R.STARTING: frozenset({_R.UNREADY, _R.READY, _R.DRAINING, _R.STOPPING, _R.FAILED,
                            _R.STOPPED}),
    # back to STARTING when self-healing requeued its job after a platform fault
    _R.UNREADY: frozenset({_R.STARTING, _R.READY, _R.DRAINING, _R.STOPPING, _R.FAILED,
                           _R.STOPPED}),
    _R.READY: frozenset({_R.STARTING, _R.UNREADY, _R.DRAINING, _R.STOPPING, _R.FAILED,
                         _R.STOPPED}),
    _R.DRAINING: frozenset({_R.STOPPING, _R.FAILED, _R.STOPPED}),
    _R.STOPPING: frozenset({_R.STOPPED, _R.FAILED}),
    _R.STOPPED: frozenset(),
    _R.FAILED: frozenset(),
}
LIVE_REPLICA = frozenset({_R.STARTING, _R.UNREADY, _R.READY})  # counts toward the desired
ENDED_REPLICA = frozenset({_R.STOPPED, _R.FAILED})


def check_service_transition(ref: str, current: ServiceState, target: ServiceState) -> None:
    if target not in SERVICE_TRANSITIONS[current]:
        raise IllegalTransition(ref, current.value, target.value)


def check_replica_transition(ref: str, current: ReplicaState, target: ReplicaState) -> None:
    if target not in REPLICA_TRANSITIONS[current]:
        raise IllegalTransition(ref, current.value, target.value)


def service_state(deleting: bool, desired: int, ready: int, held: int) -> ServiceState:
    """What a service is, from its replicas: ``held`` counts those not yet ended."""
    if deleting:
        return ServiceState.DELETED if held == 0 else ServiceState.DELETING
    if ready:
        return ServiceState.RUNNING
    if desired == 0 and held == 0:
        return ServiceState.IDLE
    return ServiceState.STARTING


# --- autoscaling ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The router's traffic over one interval: requests started per second, the average number
    in flight (waiting for a replica included), and whether any arrived."""

    at_s: float  # monotonic seconds
    rps: float
    concurrency: float
    waiting: int = 0  # requests waiting for a first replica right now


@dataclass(frozen=True)
class Scale:
    desired: int
    recommendation: int  # what this sample alone asks for
    why: str


def recommend(spec: ServiceSpec, sample: Sample) -> int:
    """Replicas this one sample needs: the load over the per-replica target, rounded up (a
    request waiting for a first replica asks for one)."""
    if spec.target_rps is not None:
        need = math.ceil(round(sample.rps / spec.target_rps, 6))
    elif spec.target_concurrency is not None:
        need = math.ceil(round(sample.concurrency / spec.target_concurrency, 6))
    else:
        need = max(1, spec.min_replicas)
    return max(need, 1) if sample.waiting else need


def desired_replicas(spec: ServiceSpec, window: Sequence[Sample], now_s: float,
                     last_request_s: float, current: int) -> Scale:
    """How many replicas the service should have now (``window``: samples oldest first, the
    newest taken now; ``last_request_s``: the last request, or the creation).

    - Up at once: the newest sample is in the window, and the window's maximum wins.
    - Down only when every recommendation of the last ``stabilization_s`` is lower, and only
      once the samples cover that long (a restarted controller waits): no flapping.
    - To zero after ``scale_to_zero_s`` without a request, if ``min_replicas`` is 0; a
      request waiting for a replica always asks for one.
    - Always within [min_replicas, max_replicas]; at least one while traffic is recent.
    """
    newest = window[-1] if window else None
    now_need = recommend(spec, newest) if newest is not None else 0
    waiting = newest is not None and newest.waiting > 0
    if (spec.min_replicas == 0 and not waiting
            and now_s - last_request_s >= spec.scale_to_zero_s):
        return Scale(0, now_need, f"idle: no request for {spec.scale_to_zero_s} s")
    if spec.autoscaled:
        recent = [s for s in window if now_s - s.at_s <= spec.stabilization_s]
        need = max((recommend(spec, s) for s in recent), default=current)
        why = "load"
        covered = any(s.at_s <= now_s - spec.stabilization_s for s in window)
        if need < current and not covered:
            need, why = current, "stabilising"
    else:
        need, why = spec.min_replicas, "fixed size"
    desired = min(max(need, 1, spec.min_replicas), spec.max_replicas)
    return Scale(desired, now_need, why)


# --- converging replicas -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaView:
    id: str
    generation: int  # the spec version it runs
    state: ReplicaState


@dataclass(frozen=True)
class Plan:
    start: int = 0  # new replicas of the current generation
    drain: tuple[str, ...] = ()  # out of the rotation, stopped when idle

    @property
    def empty(self) -> bool:
        return not self.start and not self.drain


def plan(desired: int, generation: int, replicas: Sequence[ReplicaView]) -> Plan:
    """The next step towards ``desired`` READY replicas of ``generation``.

    A rolling update surges by one: a new replica starts, and an old READY one is drained only
    when the READY count stays at least ``min(desired, READY now)`` without it; an old replica
    that is not READY serves nothing and goes at once. Scaling drains those not READY first.
    """
    live = [r for r in replicas if r.state in LIVE_REPLICA]
    new = [r for r in live if r.generation == generation]
    old = [r for r in live if r.generation != generation]
    ready = [r for r in live if r.state is ReplicaState.READY]
    drain: list[str] = [r.id for r in old if r.state is not ReplicaState.READY]
    old_ready = [r for r in old if r.state is ReplicaState.READY]
    if not old_ready:
        start = max(0, desired - len(new))
        extra = len(new) - desired
        if extra > 0:
            order = sorted(new, key=lambda r: (r.state is ReplicaState.READY, r.id))
            drain += [r.id for r in order[:extra]]
        return Plan(start, tuple(drain))
    # Rolling: at most one new replica beyond the desired count in flight.
    start = 1 if len(new) < desired and len(new) + len(old_ready) <= desired else 0
    start = max(start, desired - len(new) - len(old_ready))
    keep = min(desired, len(ready))
    spare = len(ready) - keep
    if desired == 0:
        spare = len(old_ready)
    drain += [r.id for r in sorted(old_ready, key=lambda r: r.id)[:max(0, spare)]]
    if len(new) > desired:  # scaled down mid-rollout: the new ones not READY go first
        order = sorted(new, key=lambda r: (r.state is ReplicaState.READY, r.id))
        drain += [r.id for r in order[:len(new) - desired]]
    return Plan(start, tuple(drain))


def drained(outstanding: int, draining_for_s: float, settle_s: float, timeout_s: float) -> bool:
    """Whether a draining replica may stop: the router has had ``settle_s`` to take it out of
    rotation and no request is in flight to it, or ``timeout_s`` has passed regardless."""
    if draining_for_s >= timeout_s:
        return True
    return draining_for_s >= settle_s and outstanding == 0
