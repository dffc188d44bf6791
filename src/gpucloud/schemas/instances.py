"""Wire shapes of interactive GPU instances."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from gpucloud.core.errors import InvalidRequest
from gpucloud.core.instances import Desired, IdleAction, InstanceSpec, InstanceState
from gpucloud.core.quantities import parse_duration_s
from gpucloud.schemas import EventOut, Wire

__all__ = ["InstanceSpec"]


class InstanceOut(Wire):
    id: str
    name: str
    tenant_id: str
    user_id: str
    state: InstanceState
    desired: Desired
    reason: str
    message: str
    gpus: int  # what it has when started with GPUs
    gpu_type: str | None
    cpus: float
    memory_mib: int
    disk_gib: int
    image: str | None
    volumes: list[str]
    jupyter: bool
    jupyter_path: str | None  # under the control plane's URL; sign in with your token
    no_gpu: bool  # the current (or next) run has no GPU, at the CPU price
    job_id: str | None  # the job that runs it now
    node_id: str | None = None
    devices: list[str] = Field(default_factory=list)
    runs: int
    # What it costs now: its run's price while it holds a job, its disk's while stopped.
    price_per_hour_minor: int
    currency: str
    utilization_pct: int | None
    utilization_at: datetime | None
    idle_since: datetime | None
    idle_warned_at: datetime | None
    saved_minor: int  # saved by idle reclamation: its price per hour x the time it held none
    saved_seconds: int
    disk_used_bytes: int | None = None  # measured on show only
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    events: list[EventOut] = Field(default_factory=list)  # on show: the latest, oldest first


class InstanceStart(Wire):
    model_config = ConfigDict(extra="forbid", frozen=True)
    no_gpu: bool = False


class UtilizationReport(Wire):
    """A simulated GPU's utilisation, as its node would read it (real GPUs: NVML)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    gpu_util_pct: Annotated[int, Field(ge=0, le=100)]


MAX_POLICY_S = 366 * 86400


class IdlePolicyIn(Wire):
    """Below ``below_pct`` GPU utilisation for ``idle`` (e.g. 30m): a warning; ``grace`` later
    (default 5m), ``action``: restart without GPUs (no-gpu) or stop."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    below_pct: Annotated[int, Field(ge=1, le=100)] = 5
    # At most a year each: the columns are 32-bit (a larger one was a 500: found by schemathesis).
    idle_s: Annotated[int, Field(ge=0, le=MAX_POLICY_S)]
    grace_s: Annotated[int, Field(ge=0, le=MAX_POLICY_S)] = 300
    action: IdleAction = IdleAction.NO_GPU

    @model_validator(mode="before")
    @classmethod
    def _durations(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        try:
            for human, field in (("idle", "idle_s"), ("grace", "grace_s")):
                if human in data:
                    data[field] = parse_duration_s(data.pop(human), human)
        except InvalidRequest as err:
            raise ValueError(str(err)) from err
        return data


class IdlePolicyOut(Wire):
    tenant_id: str
    below_pct: int
    idle_s: int
    grace_s: int
    action: IdleAction
    updated_by: str
    updated_at: datetime
