"""Filters: which nodes can take a shape, and why the others cannot.

Each filter works on many nodes at once and names its rejection with a short plural phrase, so
that a pending workload's reason reads "0/1523 nodes fit: 1200 too few free GPUs, 300 wrong GPU
model". A node is charged to the first filter that rejects it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gpucloud.scheduling.model import MILLI, ClusterSnapshot, Shape, Workload
from gpucloud.scheduling.state import BoolArray, ClusterState, IntArray


@dataclass(frozen=True)
class Rejection:
    filter: str
    phrase: str


class Filter(Protocol):
    name: str
    phrase: str

    def fits(self, state: ClusterState, shape: Shape, idx: IntArray) -> BoolArray:
        """True where node ``idx[k]`` passes this filter."""
        ...


class Healthy:
    name, phrase = "healthy", "unhealthy"

    def fits(self, state: ClusterState, shape: Shape, idx: IntArray) -> BoolArray:
        return state.healthy[idx]


class GpuModel:
    name, phrase = "gpu-model", "wrong GPU model"

    def fits(self, state: ClusterState, shape: Shape, idx: IntArray) -> BoolArray:
        if shape.gpu_count == 0:
            return np.ones(idx.size, dtype=np.bool_)
        # Any device of an allowed model passes; how many are free is FreeGpus' question.
        return np.asarray(state.usable(shape, idx).any(axis=1))


class FreeGpus:
    name, phrase = "gpus", "too few free GPUs"

    def fits(self, state: ClusterState, shape: Shape, idx: IntArray) -> BoolArray:
        if shape.gpu_count == 0:
            return np.ones(idx.size, dtype=np.bool_)
        room = state.usable(shape, idx) & (state.gpu_free[idx] >= shape.gpu_milli)
        return np.asarray(room.sum(axis=1) >= shape.gpu_count)


class FreeCpu:
    name, phrase = "cpu", "too few free CPUs"

    def fits(self, state: ClusterState, shape: Shape, idx: IntArray) -> BoolArray:
        return np.asarray(state.cpu_free[idx] >= shape.cpu_milli)


class FreeMemory:
    name, phrase = "memory", "too little free memory"

    def fits(self, state: ClusterState, shape: Shape, idx: IntArray) -> BoolArray:
        return np.asarray(state.mem_free[idx] >= shape.memory_mib)


DEFAULT_FILTERS: tuple[Filter, ...] = (Healthy(), GpuModel(), FreeGpus(), FreeCpu(),
                                       FreeMemory())


def feasible(state: ClusterState, shape: Shape, idx: IntArray,
             filters: Sequence[Filter] = DEFAULT_FILTERS) -> BoolArray:
    if tuple(filters) == DEFAULT_FILTERS:  # the same five tests, fused: fewer NumPy calls
        ok = (state.healthy[idx] & (state.cpu_free[idx] >= shape.cpu_milli)
              & (state.mem_free[idx] >= shape.memory_mib))
        if shape.gpu_count:
            ok &= _gpu_room(state, shape, idx)
        return np.asarray(ok)
    ok = np.ones(idx.size, dtype=np.bool_)
    for f in filters:
        ok &= f.fits(state, shape, idx)
    return ok


def _gpu_room(state: ClusterState, shape: Shape, idx: IntArray | slice) -> BoolArray:
    """GpuModel and FreeGpus together: enough usable devices with room. One GPU model per
    node: the node's summaries (whole GPUs need fully free devices, a fraction one device
    with room) and its model; otherwise device by device."""
    if not state.uniform:
        room = state.usable(shape, idx) & (state.gpu_free[idx] >= shape.gpu_milli)
        return np.asarray(room.sum(axis=1) >= shape.gpu_count)
    if shape.gpu_milli == MILLI:
        ok = state.full_free[idx] >= shape.gpu_count
    else:
        ok = state.max_free[idx] >= shape.gpu_milli
    if shape.gpu_models is not None:
        ok &= state.model_mask(shape.gpu_models)[state.gpu_model[idx, 0]]
    return np.asarray(ok)


def rejections(state: ClusterState, shape: Shape,
               filters: Sequence[Filter] = DEFAULT_FILTERS) -> dict[str, int]:
    """Phrase -> number of nodes rejected by it (first failing filter per node)."""
    if tuple(filters) == DEFAULT_FILTERS and state.uniform:
        return _default_rejections(state, shape)
    idx = np.arange(len(state), dtype=np.int64)
    undecided = np.ones(idx.size, dtype=np.bool_)
    counts: dict[str, int] = {}
    for f in filters:
        failed = undecided & ~f.fits(state, shape, idx)
        if failed.any():
            counts[f.phrase] = counts.get(f.phrase, 0) + int(failed.sum())
        undecided &= ~failed
    return counts


def _default_rejections(state: ClusterState, shape: Shape) -> dict[str, int]:
    """``rejections`` for the default filters on a cluster of one-model nodes, from the
    per-node summaries (GpuModel: a healthy device of an allowed model)."""
    steps: list[tuple[str, BoolArray]] = [(Healthy.phrase, state.healthy)]
    if shape.gpu_count:
        model = state.any_ok & state.model_mask(shape.gpu_models)[state.gpu_model[:, 0]]
        steps += [(GpuModel.phrase, model), (FreeGpus.phrase, _gpu_room(state, shape, slice(None)))]
    steps += [(FreeCpu.phrase, state.cpu_free >= shape.cpu_milli),
              (FreeMemory.phrase, state.mem_free >= shape.memory_mib)]
    undecided = np.ones(len(state), dtype=np.bool_)
    counts: dict[str, int] = {}
    for phrase, fits in steps:
        failed = int(np.count_nonzero(undecided)) - int(np.count_nonzero(undecided & fits))
        if failed:
            counts[phrase] = counts.get(phrase, 0) + failed
            undecided &= fits
    return counts


def why_pending(total_nodes: int, counts: dict[str, int] | Iterable[Rejection]) -> str:
    """'0/3 nodes fit: 2 too few free GPUs, 1 unhealthy', largest group first."""
    if total_nodes == 0:
        return "no nodes are registered yet"
    if not isinstance(counts, dict):
        tally: dict[str, int] = {}
        for r in counts:
            tally[r.phrase] = tally.get(r.phrase, 0) + 1
        counts = tally
    fitting = total_nodes - sum(counts.values())
    detail = ", ".join(f"{n} {phrase}" for phrase, n in
                       sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return f"{fitting}/{total_nodes} nodes fit" + (f": {detail}" if detail else "")


def never_fits(snapshot: ClusterSnapshot, workload: Workload) -> str | None:
    """Why no node could hold ``workload`` even empty and healthy; None if one could (or if no
    node has registered yet: the job may queue for the fleet to appear)."""
    reasons: list[str] = []
    for node in snapshot.nodes:
        allowed = workload.gpu_models
        matching = sum(1 for d in node.devices if allowed is None or d.model in allowed)
        if workload.gpu_count and matching < workload.gpu_count:
            reasons.append(f"{node.name} has {matching} matching GPUs")
        elif node.cpu_milli < workload.cpu_milli:
            reasons.append(f"{node.name} has {node.cpu_milli / 1000:g} CPUs")
        elif node.memory_mib < workload.memory_mib:
            reasons.append(f"{node.name} has {node.memory_mib} MiB of memory")
        else:
            return None
    return "; ".join(reasons) or None
