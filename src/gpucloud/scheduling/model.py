"""Immutable snapshots the placement core reads: nodes, devices, workloads.

GPU shares are in milli-GPU (1000 = one whole device) so that fractional GPUs are first-class. A
workload asks for ``gpu_count`` devices with ``gpu_milli`` each: a fractional request is
``gpu_count == 1`` and ``0 < gpu_milli < 1000``; whole-GPU requests have ``gpu_milli == 1000``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

MILLI = 1000  # milli-GPU in one device


@dataclass(frozen=True)
class Topology:
    """Where a node sits; gang/topology placement (later) groups by these domains."""

    nvlink_island: str = ""
    leaf_switch: str = ""
    rack: str = ""


@dataclass(frozen=True)
class Device:
    index: int
    model: str
    free_milli: int = MILLI
    healthy: bool = True


@dataclass(frozen=True)
class Node:
    name: str
    cpu_milli: int
    memory_mib: int
    devices: tuple[Device, ...] = ()
    cpu_free: int | None = None  # None: all free
    memory_free: int | None = None
    healthy: bool = True
    labels: tuple[tuple[str, str], ...] = ()
    topology: Topology = Topology()

    @property
    def model(self) -> str:
        """The node's GPU model ("" for a CPU-only node); mixed nodes report the first."""
        return self.devices[0].model if self.devices else ""


@dataclass(frozen=True)
class ClusterSnapshot:
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class TopologyRequirement:
    """Gang members in one domain if they fit (``prefer``), or must (``require``)."""

    prefer: str = "nvlink_island"
    require: str | None = None


@dataclass(frozen=True)
class Workload:
    """One pending replica. Gang/priority/tenant fields are carried for the queueing layer."""

    id: str
    cpu_milli: int
    memory_mib: int = 0
    gpu_count: int = 0
    gpu_milli: int = 0  # per device; MILLI for whole GPUs
    gpu_models: frozenset[str] | None = None  # None: any model
    priority: int = 0
    tenant: str = ""
    gang_id: str | None = None
    gang_size: int = 1
    topology: TopologyRequirement | None = None
    seconds_since_checkpoint: float | None = None
    time_limit_s: float | None = None  # wall-clock limit; backfill needs it (None: unbounded)
    # A gang whose members must each have a node of their own (a multi-node job: one process
    # per node); otherwise members may share a node, as pods of a gang may.
    one_per_node: bool = False
    datasets: frozenset[str] = frozenset()  # dataset versions it reads (dataset_affinity.py)

    def __post_init__(self) -> None:
        if self.gpu_count < 0 or self.cpu_milli < 0 or self.memory_mib < 0:
            raise ValueError(f"{self.id}: negative request")
        if self.gpu_count and not 0 < self.gpu_milli <= MILLI:
            raise ValueError(f"{self.id}: gpu_milli must be in 1..{MILLI} when GPUs are asked")
        if self.gpu_count > 1 and self.gpu_milli != MILLI:
            raise ValueError(f"{self.id}: only single-GPU requests may be fractional")

    @cached_property  # a frozen dataclass keeps its __dict__; placement asks for it often
    def shape(self) -> Shape:
        return Shape(self.cpu_milli, self.memory_mib, self.gpu_count,
                     self.gpu_milli if self.gpu_count else 0, self.gpu_models, self.datasets)

    @property
    def total_gpu_milli(self) -> int:
        return self.gpu_count * self.gpu_milli if self.gpu_count else 0


@dataclass(frozen=True)
class Shape:
    """What placement depends on; workloads of one shape share cached node scores."""

    cpu_milli: int
    memory_mib: int
    gpu_count: int
    gpu_milli: int
    gpu_models: frozenset[str] | None = None
    datasets: frozenset[str] = frozenset()  # only a dataset-affinity scorer reads it

    @property
    def is_fractional(self) -> bool:
        return self.gpu_count == 1 and self.gpu_milli < MILLI

    @property
    def total_gpu_milli(self) -> int:
        return self.gpu_count * self.gpu_milli


class Placement(NamedTuple):
    """Where a workload goes. (A named tuple: a pass makes one per placement, and a frozen
    dataclass takes about three times as long to build.)"""

    workload_id: str
    node: str
    devices: tuple[int, ...]  # device indices on the node
    gpu_milli: int  # taken from each listed device
    cpu_milli: int
    memory_mib: int


@dataclass(frozen=True)
class Unplaced:
    workload_id: str
    message: str  # "0/3 nodes fit: 2 too few free GPUs, 1 too little memory"


@dataclass(frozen=True)
class Plan:
    placements: tuple[Placement, ...]
    pending: tuple[Unplaced, ...] = field(default=())


KINDS = 10  # request kinds tracked per node (for clustering-style scorers)


def kind_of(shape: Shape) -> int:
    """0 CPU-only, 1 fractional, else 1 + GPU count (capped at KINDS - 1)."""
    if shape.gpu_count == 0:
        return 0
    if shape.is_fractional:
        return 1
    return min(1 + shape.gpu_count, KINDS - 1)
