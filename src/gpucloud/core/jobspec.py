"""What a user asks for when submitting a job: validated once, here, for API, CLI and task files."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gpucloud.billing.pricing import Tier
from gpucloud.core.catalog import resolve_model
from gpucloud.core.datasets import parse_dataset_refs
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.quantities import parse_duration_s, parse_memory_mib
from gpucloud.core.volumes import parse_mounts

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by the platform for every job; a user value would silently lose.
RESERVED_ENV_PREFIXES = ("GPUCLOUD_",)
RESERVED_ENV_KEYS = frozenset(
    {
        "CUDA_VISIBLE_DEVICES",
        "HIP_VISIBLE_DEVICES",
        "ASCEND_RT_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        # the rendezvous of multi-node jobs (core/launch_env.py)
        "MASTER_ADDR",
        "MASTER_PORT",
        "NNODES",
        "NODE_RANK",
        "LOCAL_WORLD_SIZE",
        "WORLD_SIZE",
        "RANK",
        "PET_NNODES",
        "PET_NODE_RANK",
        "PET_NPROC_PER_NODE",
        "PET_MASTER_ADDR",
        "PET_MASTER_PORT",
    }
)
MAX_GPUS_PER_NODE = 64
MAX_NODES_PER_JOB = 256
DEFAULT_CPUS = 1.0
DEFAULT_MEMORY_MIB = 1024


class JobSpec(BaseModel):
    """A job request. Sizes arrive as human strings and are normalised to integers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: Annotated[list[str], Field(min_length=1)]
    name: str | None = None
    # A job runs its command once on each of ``nodes`` nodes (a gang: all start or none), with
    # ``gpus``, ``cpus`` and memory on each. One node is the common case.
    nodes: Annotated[int, Field(ge=1, le=MAX_NODES_PER_JOB)] = 1
    gpus: Annotated[int, Field(ge=0, le=MAX_GPUS_PER_NODE)] = 0
    gpu_type: str | None = None
    cpus: Annotated[float, Field(gt=0, le=1024)] = DEFAULT_CPUS
    memory_mib: Annotated[int, Field(gt=0)] = DEFAULT_MEMORY_MIB
    max_duration_s: Annotated[int | None, Field(gt=0)] = None
    env: dict[str, str] = Field(default_factory=dict)
    priority: Annotated[int, Field(ge=-100, le=100)] = 0
    tier: Tier = Tier.ON_DEMAND  # spot: cheaper, may be preempted
    # Volumes NAME:/path[:ro] (core/volumes.py) and datasets name[:version], read-only
    # (core/datasets.py); each must be the tenant's, checked at submission.
    volumes: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)
    # A catalogue or private image (core/images.py): its venv on the node; None: the node's own.
    image: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _accept_human_fields(cls, data: Any) -> Any:
        """Accept ``memory: 16G`` and ``max_duration: 2h`` (the task-file spelling)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        try:
            if "memory" in data:
                data["memory_mib"] = parse_memory_mib(data.pop("memory"))
            if "max_duration" in data:
                raw = data.pop("max_duration")
                data["max_duration_s"] = None if raw is None else parse_duration_s(raw)
        except InvalidRequest as err:
            raise ValueError(str(err)) from err
        if isinstance(data.get("command"), str):
            data["command"] = ["/bin/sh", "-c", data["command"]]
        if "gpus_per_node" in data:  # the multi-node spelling of the same field
            if "gpus" in data and data["gpus"] != data["gpus_per_node"]:
                raise ValueError("give gpus or gpus_per_node, not both (they are the same)")
            data["gpus"] = data.pop("gpus_per_node")
        return data

    @field_validator("name", "image")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                "use 1-63 lower-case letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("gpu_type")
    @classmethod
    def _canonical_gpu_type(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return resolve_model(value).name
        except InvalidRequest as err:
            raise ValueError(str(err)) from err

    @field_validator("cpus")
    @classmethod
    def _cpu_milli_granularity(cls, value: float) -> float:
        if abs(value * 1000 - round(value * 1000)) > 1e-6:
            raise ValueError("cpus has at most three decimals (milli-CPU granularity)")
        return value

    @field_validator("volumes")
    @classmethod
    def _check_volumes(cls, value: list[str]) -> list[str]:
        try:
            return [str(m) for m in parse_mounts(value)]
        except InvalidRequest as err:
            raise ValueError(str(err)) from err

    @field_validator("datasets")
    @classmethod
    def _check_datasets(cls, value: list[str]) -> list[str]:
        try:
            return [str(r) for r in parse_dataset_refs(value)]
        except InvalidRequest as err:
            raise ValueError(str(err)) from err

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_KEY.match(key):
                raise ValueError(f"{key!r} is not a valid variable name")
            if key in RESERVED_ENV_KEYS or key.startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(f"{key} is set by gpucloud and cannot be overridden")
        return value

    @model_validator(mode="after")
    def _gpu_type_needs_gpus(self) -> JobSpec:
        if self.gpu_type is not None and self.gpus == 0:
            raise ValueError("gpu_type is set but gpus is 0; ask for at least one GPU")
        return self

    @property
    def cpu_milli(self) -> int:
        return round(self.cpus * 1000)

    @property
    def total_gpus(self) -> int:
        return self.gpus * self.nodes


def describe_validation_error(errors: list[Any]) -> str:
    """One readable sentence from pydantic's error list: 'gpus: must be >= 0; name: ...'."""
    parts = []
    for error in errors:
        location = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",))
        message = str(error.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def parse_job_spec(data: Any) -> JobSpec:
    """Validate a job request from any source; raises InvalidRequest with a readable message."""
    from pydantic import ValidationError

    try:
        return JobSpec.model_validate(data)
    except ValidationError as err:
        raise InvalidRequest(describe_validation_error(list(err.errors()))) from err
