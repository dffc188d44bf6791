"""Immutable snapshots of the fleet and of the work waiting for it: the scheduler's inputs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceView:
    id: str
    index: int
    model: str  # canonical catalog name
    healthy: bool
    allocated: bool


@dataclass(frozen=True)
class NodeView:
    id: str
    healthy: bool
    cpu_milli: int  # capacity
    memory_mib: int
    cpu_milli_used: int = 0
    memory_mib_used: int = 0
    devices: tuple[DeviceView, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def cpu_milli_free(self) -> int:
        return self.cpu_milli - self.cpu_milli_used

    @property
    def memory_mib_free(self) -> int:
        return self.memory_mib - self.memory_mib_used


@dataclass(frozen=True)
class ClusterSnapshot:
    nodes: tuple[NodeView, ...]


@dataclass(frozen=True)
class Request:
    """Resources one replica needs on one node."""

    gpus: int = 0
    gpu_models: frozenset[str] | None = None  # None: any model
    cpu_milli: int = 1000
    memory_mib: int = 1024


@dataclass(frozen=True)
class Workload:
    id: str
    tenant_id: str
    request: Request
    priority: int = 0
    # Position in submission order; ids are time-ordered, so the id itself works.
    order_key: str = field(default="")
