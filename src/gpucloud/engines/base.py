"""The engine contract. Engine differences stay behind it: nothing above imports subprocess.

An engine reports nodes and their devices, launches one attempt of a job on its nodes
(idempotently: launching the same launch id twice never runs it twice), reports run status,
stops, streams logs, and drains or resumes nodes that gpucloud takes out of service.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from gpucloud.core.faults import FaultSignal, SignalKind
from gpucloud.core.runs import RunPhase, RunStatus

__all__ = [
    "BurnInResult",
    "CacheFill",
    "DeviceReport",
    "Engine",
    "EngineRef",
    "FaultInjector",
    "FaultSignal",
    "LaunchSpec",
    "Mount",
    "NodeReport",
    "ReplicaSpec",
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
    address: str = "127.0.0.1"  # where workloads on other nodes reach this one
    drained: bool = False  # the engine will place nothing new here (e.g. Slurm DRAIN)
    drain_reason: str = ""


@dataclass(frozen=True)
class Mount:
    """A directory the job asked for at ``path``; its real place is ``source`` (also in the
    environment). Engines that cannot mount link it into the job's working directory."""

    source: str
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class CacheFill:
    """Copy a dataset version (``source``) into the node's cache (``target``) before the
    command starts, unless it is there already."""

    source: str
    target: str


@dataclass(frozen=True)
class ReplicaSpec:
    """One node's share of a launch: its allocation, devices and complete environment."""

    allocation_id: str
    node_id: str
    rank: int  # 0..replicas-1; rank 0's node is the rendezvous (MASTER_ADDR)
    device_indexes: Sequence[int]
    env: Mapping[str, str]  # user env plus the platform's GPUCLOUD_*, rank and pinning variables
    cpu_milli: int
    memory_mib: int
    mounts: Sequence[Mount] = ()  # its volumes (their paths are in env too)
    cache_fills: Sequence[CacheFill] = ()  # its datasets' node-cache copies to make first


@dataclass(frozen=True)
class LaunchSpec:
    """Everything an engine needs to start one attempt of a job on all its nodes at once.

    A multi-node job is a gang: the engine starts every replica or reports the launch failed,
    and ends them together (one replica failing stops the others).
    """

    job_id: str
    command: Sequence[str]
    replicas: Sequence[ReplicaSpec]
    time_limit_s: int | None = None  # the engine may enforce it too; gpucloud stops first

    def __post_init__(self) -> None:
        if not self.replicas:
            raise ValueError(f"job {self.job_id}: a launch needs at least one replica")

    @property
    def launch_id(self) -> str:
        """Idempotency key of the launch: launching the same id twice never runs it twice."""
        return self.replicas[0].allocation_id


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
        """The run's output (rank 0's) from byte ``offset``; with ``follow``, until it ended."""
        ...

    def drain(self, node_id: str, reason: str) -> None:
        """Place nothing new on the node (running work is left alone). Idempotent."""
        ...

    def resume(self, node_id: str) -> None:
        """Undo ``drain``. Idempotent."""
        ...

    def faults(self, after: int) -> list[FaultSignal]:
        """Health signals (Xid events, ECC, ...) with ``seq`` above ``after``, oldest first.
        They outlive the control plane, so a restarted one misses none."""
        ...

    def burn_in(self, node_id: str, device_index: int | None) -> BurnInResult:
        """Check real hardware before it returns to the pool (short; may block a few
        seconds). Simulated devices are checked by the platform, not here."""
        ...


@dataclass(frozen=True)
class BurnInResult:
    passed: bool
    detail: str


@runtime_checkable
class FaultInjector(Protocol):
    """Engines whose simulated devices take injected faults (``gpucloud debug inject-fault``),
    which then travel the same path as real ones."""

    def inject_fault(self, node_id: str, kind: SignalKind, device_index: int | None,
                     code: int | None, duration_s: float) -> None: ...


@dataclass(frozen=True)
class ShellContext:
    """How to start a shell inside a running launch: the process the control plane starts on
    a pty of its own (the local engine: the shell itself; Slurm: an ``srun --pty`` step)."""

    argv: list[str]
    env: Mapping[str, str]
    cwd: str


@runtime_checkable
class ShellHost(Protocol):
    """Engines that can open an interactive shell inside a running launch (instances)."""

    def shell(self, ref: EngineRef) -> ShellContext: ...
