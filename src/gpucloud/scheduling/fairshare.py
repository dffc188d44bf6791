"""Queue order: priority class first, then Dominant Resource Fairness among tenants.

Within one priority class the next job comes from the tenant with the smallest dominant share
(its largest fraction of cluster CPU, memory or GPU, divided by its weight), oldest job first.
Shares are charged as jobs are placed in the same pass, so one pass interleaves tenants the way
DRF's progressive filling does; a job that cannot be placed charges nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from gpucloud.scheduling.model import MILLI, Node, Workload

FloatArray = npt.NDArray[np.float64]


def demand(w: Workload) -> FloatArray:
    return np.array([w.cpu_milli, w.memory_mib, w.total_gpu_milli], dtype=np.float64)


def capacity(nodes: Sequence[Node]) -> FloatArray:
    return np.array([sum(n.cpu_milli for n in nodes), sum(n.memory_mib for n in nodes),
                     sum(len(n.devices) for n in nodes) * MILLI], dtype=np.float64)


@dataclass
class Shares:
    capacity: FloatArray
    weights: Mapping[str, float] = field(default_factory=dict)  # default weight 1
    used: dict[str, list[float]] = field(default_factory=dict)
    # Plain floats and a cached share per tenant: fair_order asks for every tenant's share
    # before each unit, and NumPy on three numbers costs more than the arithmetic.
    _present: tuple[tuple[int, float], ...] = field(init=False, repr=False)
    _dominant: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        # A resource the cluster lacks cannot dominate.
        self._present = tuple((i, float(c)) for i, c in enumerate(self.capacity) if c > 0)

    def dominant(self, tenant: str) -> float:
        share = self._dominant.get(tenant)
        if share is None:
            used = self.used.get(tenant)
            if used is None:
                return 0.0
            share = max([0.0] + [used[i] / c for i, c in self._present])
            share /= self.weights.get(tenant, 1.0)
            self._dominant[tenant] = share
        return share

    def charge(self, tenant: str, w: Workload, sign: int = 1) -> None:
        used = self.used.setdefault(tenant, [0.0, 0.0, 0.0])
        used[0] += sign * w.cpu_milli
        used[1] += sign * w.memory_mib
        used[2] += sign * w.total_gpu_milli
        self._dominant.pop(tenant, None)


T = TypeVar("T")


class Unit(NamedTuple, Generic[T]):
    """A schedulable unit: one workload or a whole gang (``item``), with its ordering keys.
    (A named tuple: a pass makes one per queued workload, and a frozen dataclass takes about
    three times as long to build.)"""

    item: T
    tenant: str
    priority: int
    position: int  # submission order (first member's place in the queue)


def fair_order(units: Sequence[Unit[T]], shares: Shares) -> Iterator[Unit[T]]:
    """Yield units highest priority class first, DRF within a class. The caller charges
    ``shares`` for each unit it places before asking for the next one."""
    classes: dict[int, dict[str, deque[Unit[T]]]] = {}
    for u in sorted(units, key=attrgetter("position")):
        classes.setdefault(u.priority, {}).setdefault(u.tenant, deque()).append(u)
    dominant, cached = shares.dominant, shares._dominant
    for priority in sorted(classes, reverse=True):
        queues = classes[priority]
        while queues:
            # The least (dominant share, head's position): a plain loop, as this runs once
            # per unit over every tenant with work queued.
            tenant, best, first = "", 0.0, -1
            for t, q in queues.items():
                share = cached.get(t)
                if share is None:
                    share = dominant(t)
                at = q[0].position
                if first < 0 or share < best or (share == best and at < first):
                    tenant, best, first = t, share, at
            unit = queues[tenant].popleft()
            if not queues[tenant]:
                del queues[tenant]
            yield unit
