"""Mutable free-capacity index used while a plan or a simulation is built.

Per-node free vectors live in NumPy arrays so that a scorer can look at every node in one
vectorised expression. Each node carries a version number bumped on every change, and the state
logs which node each change touched, which lets callers cache per-shape node scores and
recompute only the nodes that changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gpucloud.scheduling.model import (
    KINDS,
    MILLI,
    ClusterSnapshot,
    Node,
    Placement,
    Shape,
    Workload,
    kind_of,
)

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class ClusterState:
    def __init__(self, nodes: Sequence[Node]) -> None:
        self.names: list[str] = [n.name for n in nodes]
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        self.models: list[str] = sorted({d.model for n in nodes for d in n.devices})
        code = {m: i for i, m in enumerate(self.models)}
        n_nodes = len(nodes)
        width = max((len(n.devices) for n in nodes), default=0)
        self.width = max(width, 1)
        self.absent = len(self.models)  # model code of padding slots
        self.cpu_cap = np.array([n.cpu_milli for n in nodes], dtype=np.int64)
        self.mem_cap = np.array([n.memory_mib for n in nodes], dtype=np.int64)
        self.cpu_free = np.array([n.cpu_milli if n.cpu_free is None else n.cpu_free
                                  for n in nodes], dtype=np.int64)
        self.mem_free = np.array([n.memory_mib if n.memory_free is None else n.memory_free
                                  for n in nodes], dtype=np.int64)
        self.healthy = np.array([n.healthy for n in nodes], dtype=np.bool_)
        self.gpu_count = np.array([len(n.devices) for n in nodes], dtype=np.int64)
        # Padding slots hold 0 free milli and the `absent` model: they never fit anything and
        # contribute nothing to free or fragmented capacity.
        self.gpu_free = np.zeros((n_nodes, self.width), dtype=np.int64)
        self.gpu_model = np.full((n_nodes, self.width), self.absent, dtype=np.int64)
        self.gpu_ok = np.zeros((n_nodes, self.width), dtype=np.bool_)  # exists and healthy
        for i, n in enumerate(nodes):
            for j, d in enumerate(n.devices):
                self.gpu_free[i, j] = d.free_milli if d.healthy else 0
                self.gpu_model[i, j] = code[d.model]
                self.gpu_ok[i, j] = d.healthy
        self.version = np.zeros(n_nodes, dtype=np.int64)
        self.changes = 0  # claims and releases so far: a cheap "has anything changed" check
        self.changed: list[int] = []  # the node of every claim and release, in order
        self._masks: dict[frozenset[str] | None, BoolArray] = {}
        self.kinds = np.zeros((n_nodes, KINDS), dtype=np.int64)  # placed requests per kind
        self.total_gpu_milli = int(self.gpu_count.sum()) * MILLI
        self.allocated_gpu_milli = self.total_gpu_milli - int(self.gpu_free.sum())
        # Per-node summaries over healthy devices, kept current by claim and release: filters
        # on clusters whose nodes each have one GPU model read them instead of every device.
        present = np.arange(self.width) < self.gpu_count[:, None]
        self.uniform = bool(((self.gpu_model == self.gpu_model[:, :1]) | ~present).all())
        self.any_ok = self.gpu_ok.any(axis=1)
        self.full_free = np.zeros(n_nodes, dtype=np.int64)  # fully free healthy devices
        self.max_free = np.zeros(n_nodes, dtype=np.int64)  # most free milli on one
        self.sum_free = np.zeros(n_nodes, dtype=np.int64)  # free milli on all of them
        for i, (free, ok) in enumerate(zip(self.gpu_free.tolist(), self.gpu_ok.tolist(),
                                           strict=True)):
            self._summarise(i, free, ok)

    @classmethod
    def from_snapshot(cls, snapshot: ClusterSnapshot) -> ClusterState:
        return cls(snapshot.nodes)

    def __len__(self) -> int:
        return len(self.names)

    def model_mask(self, models: frozenset[str] | None) -> BoolArray:
        """Allowed-model lookup indexed by model code (the padding code is never allowed)."""
        cached = self._masks.get(models)
        if cached is not None:
            return cached
        allowed = np.zeros(len(self.models) + 1, dtype=np.bool_)
        if models is None:
            allowed[: len(self.models)] = True
        else:
            for i, m in enumerate(self.models):
                allowed[i] = m in models
        allowed.flags.writeable = False
        self._masks[models] = allowed
        return allowed

    def usable(self, shape: Shape, idx: IntArray | slice = slice(None)) -> BoolArray:
        """Devices a shape may use (right model, present, healthy), for the nodes in ``idx``."""
        if shape.gpu_models is None:  # any model: padding slots are never ok
            return self.gpu_ok[idx]
        return self.model_mask(shape.gpu_models)[self.gpu_model[idx]] & self.gpu_ok[idx]

    def choose_devices(self, node: int, shape: Shape, device: int = -1) -> tuple[int, ...]:
        """Devices for ``shape`` on ``node``: the given device for a fraction, else the first
        fully free usable devices in index order (plain Python: one node's few devices)."""
        if shape.gpu_count == 0:
            return ()
        if shape.is_fractional and device >= 0:
            return (device,)
        if shape.gpu_models is None and not shape.is_fractional:  # the common case, quickly
            free, ok = self.gpu_free[node].tolist(), self.gpu_ok[node].tolist()
            whole = [j for j, v in enumerate(free) if v == MILLI and ok[j]][: shape.gpu_count]
            if len(whole) < shape.gpu_count:
                raise ValueError(f"{shape} does not fit on {self.names[node]}")
            return tuple(whole)
        allowed = self.model_mask(shape.gpu_models)
        usable = [j for j, (ok, code) in enumerate(zip(self.gpu_ok[node].tolist(),
                                                       self.gpu_model[node].tolist(),
                                                       strict=True)) if ok and allowed[code]]
        free = self.gpu_free[node].tolist()
        if shape.is_fractional:
            fits = [j for j in usable if free[j] >= shape.gpu_milli]
            if not fits:
                raise ValueError(f"{shape} does not fit on {self.names[node]}")
            # Best fit: the device with the least free milli that still fits (first of equals).
            return (min(fits, key=lambda j: free[j]),)
        whole = [j for j in usable if free[j] == MILLI][: shape.gpu_count]
        if len(whole) < shape.gpu_count:
            raise ValueError(f"{shape} does not fit on {self.names[node]}")
        return tuple(whole)

    def claim(self, node: int, workload: Workload, devices: tuple[int, ...]) -> Placement:
        """Take the workload's resources on ``node``; refuses anything that would over-commit."""
        shape = workload.shape
        if len(devices) != shape.gpu_count:
            raise ValueError(f"{workload.id}: {len(devices)} devices for {shape.gpu_count} GPUs")
        if self.cpu_free[node] < shape.cpu_milli or self.mem_free[node] < shape.memory_mib:
            raise ValueError(f"{workload.id}: not enough CPU or memory on {self.names[node]}")
        # One node's few devices: plain Python on lists, written back at once.
        free, ok = self.gpu_free[node].tolist(), self.gpu_ok[node].tolist()
        if devices:
            allowed, codes = self.model_mask(shape.gpu_models), self.gpu_model[node].tolist()
            for j in devices:
                if not (ok[j] and allowed[codes[j]]) or free[j] < shape.gpu_milli:
                    raise ValueError(
                        f"{workload.id}: device {j} on {self.names[node]} cannot take it")
            for j in devices:
                free[j] -= shape.gpu_milli
            self.gpu_free[node] = free
        self.cpu_free[node] -= shape.cpu_milli
        self.mem_free[node] -= shape.memory_mib
        self.allocated_gpu_milli += shape.total_gpu_milli
        self.kinds[node, kind_of(shape)] += 1
        self._changed(node, free, ok)
        return Placement(workload.id, self.names[node], devices, shape.gpu_milli,
                         shape.cpu_milli, shape.memory_mib)

    def release(self, placement: Placement) -> None:
        node = self.index[placement.node]
        self.cpu_free[node] += placement.cpu_milli
        self.mem_free[node] += placement.memory_mib
        for j in placement.devices:
            self.gpu_free[node, j] += placement.gpu_milli
        self.allocated_gpu_milli -= placement.gpu_milli * len(placement.devices)
        count = len(placement.devices)
        shape = Shape(placement.cpu_milli, placement.memory_mib, count,
                      placement.gpu_milli if count else 0)
        self.kinds[node, kind_of(shape)] -= 1
        self._changed(node, self.gpu_free[node].tolist(), self.gpu_ok[node].tolist())

    def _summarise(self, node: int, free: list[int], ok: list[bool]) -> None:
        healthy = free if all(ok) else [v for v, k in zip(free, ok, strict=True) if k]
        self.full_free[node] = healthy.count(MILLI)
        self.max_free[node] = max(healthy, default=0)
        self.sum_free[node] = sum(healthy)

    def _changed(self, node: int, free: list[int], ok: list[bool]) -> None:
        self._summarise(node, free, ok)
        self.version[node] += 1
        self.changes += 1
        self.changed.append(node)
