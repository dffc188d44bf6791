"""Placement: a pure function from a cluster snapshot and a queue to a plan.

Filters say why a node cannot take a request; a scorer ranks the nodes that can. The policy here
is strict FIFO within priority with best-fit packing; the scheduler issue adds richer policies
behind the same ``place`` signature.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gpucloud.core.cluster import ClusterSnapshot, NodeView, Request, Workload
from gpucloud.core.states import Reason


@dataclass(frozen=True)
class Rejection:
    filter: str
    phrase: str  # plural noun phrase for the summary, e.g. "too few free GPUs"


@dataclass
class _NodeState:
    """Free capacity of one node while a plan is being built (private, mutable)."""

    view: NodeView
    cpu_free: int
    memory_free: int
    free_devices: list[int]  # positions into view.devices, in index order


class Filter(Protocol):
    name: str

    def check(self, node: _NodeState, request: Request) -> Rejection | None: ...


class HealthyNode:
    name = "healthy"

    def check(self, node: _NodeState, request: Request) -> Rejection | None:
        return None if node.view.healthy else Rejection(self.name, "unhealthy")


class GpuModel:
    name = "gpu-model"

    def check(self, node: _NodeState, request: Request) -> Rejection | None:
        if request.gpus == 0 or request.gpu_models is None:
            return None
        if any(d.model in request.gpu_models for d in node.view.devices):
            return None
        return Rejection(self.name, "wrong GPU model")


class FreeGpus:
    name = "gpus"

    def check(self, node: _NodeState, request: Request) -> Rejection | None:
        if request.gpus == 0:
            return None
        usable = [i for i in node.free_devices if _usable(node.view, i, request)]
        return None if len(usable) >= request.gpus else Rejection(self.name, "too few free GPUs")


class FreeCpu:
    name = "cpu"

    def check(self, node: _NodeState, request: Request) -> Rejection | None:
        return None if node.cpu_free >= request.cpu_milli else Rejection(self.name, "too few CPUs")


class FreeMemory:
    name = "memory"

    def check(self, node: _NodeState, request: Request) -> Rejection | None:
        if node.memory_free >= request.memory_mib:
            return None
        return Rejection(self.name, "too little memory")


DEFAULT_FILTERS: tuple[Filter, ...] = (
    HealthyNode(),
    GpuModel(),
    FreeGpus(),
    FreeCpu(),
    FreeMemory(),
)


def _usable(view: NodeView, position: int, request: Request) -> bool:
    device = view.devices[position]
    return device.healthy and (request.gpu_models is None or device.model in request.gpu_models)


@dataclass(frozen=True)
class Placement:
    workload_id: str
    node_id: str
    device_ids: tuple[str, ...]
    cpu_milli: int
    memory_mib: int


@dataclass(frozen=True)
class Pending:
    workload_id: str
    reason: Reason
    message: str


@dataclass(frozen=True)
class Plan:
    placements: tuple[Placement, ...]
    pending: tuple[Pending, ...]


def why_pending(total_nodes: int, rejections: Iterable[Rejection]) -> str:
    """'0/3 nodes fit: 2 too few free GPUs, 1 unhealthy' (each node counted once, first filter)."""
    counts = Counter(r.phrase for r in rejections)
    if total_nodes == 0:
        return "no nodes are registered yet"
    detail = ", ".join(f"{n} {phrase}" for phrase, n in counts.most_common())
    return f"0/{total_nodes} nodes fit: {detail}"


def queue_order(queue: Sequence[Workload]) -> list[Workload]:
    """Higher priority first; FIFO (submission order) within a priority."""
    return sorted(queue, key=lambda w: (-w.priority, w.order_key or w.id))


def place(
    cluster: ClusterSnapshot,
    queue: Sequence[Workload],
    filters: Sequence[Filter] = DEFAULT_FILTERS,
) -> Plan:
    """Place what fits, in queue order; the first workload that does not fit blocks the rest."""
    states = [
        _NodeState(
            view=node,
            cpu_free=node.cpu_milli_free,
            memory_free=node.memory_mib_free,
            free_devices=[i for i, d in enumerate(node.devices) if not d.allocated],
        )
        for node in cluster.nodes
    ]
    placements: list[Placement] = []
    pending: list[Pending] = []
    blocker: Workload | None = None
    for workload in queue_order(queue):
        if blocker is not None:
            pending.append(
                Pending(
                    workload.id,
                    Reason.WAITING_IN_QUEUE,
                    f"waiting in the queue behind {blocker.id}",
                )
            )
            continue
        rejections: list[Rejection] = []
        candidates: list[_NodeState] = []
        for state in states:
            rejection = _first_rejection(filters, state, workload.request)
            if rejection is None:
                candidates.append(state)
            else:
                rejections.append(rejection)
        if not candidates:
            pending.append(
                Pending(
                    workload.id, Reason.WAITING_FOR_RESOURCES, why_pending(len(states), rejections)
                )
            )
            blocker = workload
            continue
        chosen = min(candidates, key=lambda s: _best_fit_key(s, workload.request))
        placements.append(_claim(chosen, workload))
    return Plan(tuple(placements), tuple(pending))


def _first_rejection(
    filters: Sequence[Filter], state: _NodeState, request: Request
) -> Rejection | None:
    for f in filters:
        rejection = f.check(state, request)
        if rejection is not None:
            return rejection
    return None


def _best_fit_key(state: _NodeState, request: Request) -> tuple[int, int, str]:
    """Fewest GPUs left free after placing, then fewest CPUs: keeps whole nodes free."""
    return (
        len(state.free_devices) - request.gpus,
        state.cpu_free - request.cpu_milli,
        state.view.id,
    )


def _claim(state: _NodeState, workload: Workload) -> Placement:
    request = workload.request
    chosen = [i for i in state.free_devices if _usable(state.view, i, request)][: request.gpus]
    state.free_devices = [i for i in state.free_devices if i not in chosen]
    state.cpu_free -= request.cpu_milli
    state.memory_free -= request.memory_mib
    return Placement(
        workload_id=workload.id,
        node_id=state.view.id,
        device_ids=tuple(state.view.devices[i].id for i in chosen),
        cpu_milli=request.cpu_milli,
        memory_mib=request.memory_mib,
    )


def never_fits(cluster: ClusterSnapshot, request: Request) -> str | None:
    """Why no node could hold ``request`` even if empty, or None if some node could."""
    if not cluster.nodes:
        return None  # inventory not reported yet: let it queue rather than refuse
    reasons: list[str] = []
    for node in cluster.nodes:
        matching = [
            d for d in node.devices if request.gpu_models is None or d.model in request.gpu_models
        ]
        if request.gpus and len(matching) < request.gpus:
            reasons.append(f"{node.id} has {len(matching)} matching GPUs")
        elif node.cpu_milli < request.cpu_milli:
            reasons.append(f"{node.id} has {node.cpu_milli / 1000:g} CPUs")
        elif node.memory_mib < request.memory_mib:
            reasons.append(f"{node.id} has {node.memory_mib} MiB of memory")
        else:
            return None
    return "; ".join(reasons)
