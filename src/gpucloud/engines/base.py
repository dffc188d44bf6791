"""The engine contract. Engine differences stay behind it: nothing above imports subprocess.

An engine reports nodes and their devices, launches one allocation (idempotently: launching the
same allocation id twice never runs it twice), reports run status, stops, and streams logs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gpucloud.core.runs import RunPhase, RunStatus

__all__ = [
    "DeviceReport",
    "Engine",
    "EngineRef",
    "LaunchSpec",
    "NodeReport",
    "RunPhase",
    "RunStatus",
]

EngineRef = str  # opaque to everything above the engine; stored on the allocation


@dataclass(frozen=True)
class DeviceReport:
    index: int
    model: str  # canonical catalog name
    memory_mib: int
    uuid: str
    pci_bus_id: str = ""
    nvlink_peers: tuple[int, ...] = ()  # indexes of devices linked to this one
    healthy: bool = True
    simulated: bool = False


@dataclass(frozen=True)
class NodeReport:
    id: str
    cpu_milli: int
    memory_mib: int
    devices: tuple[DeviceReport, ...] = ()
    healthy: bool = True
    message: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchSpec:
    """Everything an engine needs to start one replica of a job."""

    allocation_id: str
    job_id: str
    node_id: str
    command: Sequence[str]
    env: Mapping[str, str]  # user env plus the platform's GPUCLOUD_* and pinning variables
    device_indexes: Sequence[int]
    cpu_milli: int
    memory_mib: int


class Engine(Protocol):
    name: str

    def nodes(self) -> list[NodeReport]: ...

    def checkpoint_dir(self, job_id: str) -> str:
        """Where a job keeps checkpoints; the same path for every attempt of the job."""
        ...

    def launch(self, spec: LaunchSpec) -> EngineRef: ...

    def status(self, refs: Sequence[EngineRef]) -> dict[EngineRef, RunStatus]: ...

    def stop(self, ref: EngineRef, force: bool = False) -> None:
        """Ask the run to end (SIGTERM-like); with ``force``, end it now (SIGKILL-like)."""
        ...

    def logs(self, ref: EngineRef, follow: bool = False, offset: int = 0) -> Iterator[bytes]:
        """The run's output from byte ``offset``; with ``follow``, until the run has ended."""
        ...
