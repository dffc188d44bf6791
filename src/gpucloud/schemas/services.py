"""Wire shapes of inference services."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from gpucloud.core.errors import InvalidRequest
from gpucloud.core.quantities import parse_duration_s, parse_memory_mib
from gpucloud.core.services import ReplicaState, ServiceSpec, ServiceState
from gpucloud.schemas import EventOut, Wire

__all__ = ["ServiceSpec"]


class ServiceCreate(ServiceSpec):
    """A service: its name (unique among the tenant's living services) and its spec. A public
    service is reached with its own key too (``POST /v1/services/{ref}/key`` issues it)."""

    name: str
    public: bool = False

    def spec(self) -> ServiceSpec:
        return ServiceSpec.model_validate(self.model_dump(exclude={"name", "public"}))


class ServiceUpdate(Wire):
    """Only the fields given change; ``null`` clears an optional one (e.g. ``target_rps`` when
    switching to ``target_concurrency``). A change to what runs (command, compute, image, env,
    readiness) rolls out a new version replica by replica; scaling fields apply at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    command: Annotated[list[str], Field(min_length=1)] | str | None = None
    gpus: int | None = None
    gpu_type: str | None = None
    cpus: float | None = None
    memory_mib: int | None = None
    image: str | None = None
    env: dict[str, str] | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_rps: float | None = None
    target_concurrency: float | None = None
    readiness_path: str | None = None
    scale_to_zero_s: int | None = None
    stabilization_s: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _human_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        try:
            if "memory" in data:
                data["memory_mib"] = parse_memory_mib(data.pop("memory"))
            for human, name in (("scale_to_zero", "scale_to_zero_s"),
                                ("stabilization", "stabilization_s")):
                if human in data:
                    data[name] = parse_duration_s(data.pop(human), human)
        except InvalidRequest as err:
            raise ValueError(str(err)) from err
        return data

    def merged(self, current: ServiceSpec) -> dict[str, Any]:
        """The current spec with this change, to validate as a whole."""
        merged = current.model_dump(mode="json")
        for name in self.model_fields_set:
            merged[name] = getattr(self, name)
        return merged


class ReplicaOut(Wire):
    ordinal: int  # ``gpucloud service logs NAME --replica ORDINAL``
    id: str
    generation: int
    state: ReplicaState
    message: str
    job_id: str
    host: str | None
    port: int
    in_flight: int  # requests this API process has in flight to it
    created_at: datetime
    ready_at: datetime | None
    ended_at: datetime | None


class ServiceOut(Wire):
    id: str
    name: str
    tenant_id: str
    user_id: str
    state: ServiceState
    reason: str
    message: str
    path: str  # the endpoint, under the control plane's URL: /s/<tenant>/<name>/
    public: bool
    generation: int  # the spec version replicas converge to
    desired_replicas: int
    ready_replicas: int
    spec: ServiceSpec
    price_per_replica_hour_minor: int  # each replica is billed per second at this rate
    currency: str
    replicas: list[ReplicaOut] = Field(default_factory=list)  # not yet ended
    created_at: datetime
    updated_at: datetime
    events: list[EventOut] = Field(default_factory=list)  # on show: the latest, oldest first


class ServiceKey(Wire):
    """The public service's key: shown once. Send it as ``Authorization: Bearer KEY``."""

    service_id: str
    key: str
