"""Placement decisions over a free-capacity index, with per-shape score caches.

A node's score for a shape depends only on that node's free capacity, so each shape keeps its
last scores and the node versions they were computed at; a decision rescores only the nodes
that changed since, then takes the best node. Ties go to the node with the lowest rank (a fixed
order, by default the node list order), which packs deterministically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpucloud.scheduling.filters import DEFAULT_FILTERS, Filter, feasible, rejections, why_pending
from gpucloud.scheduling.frag import FloatArray
from gpucloud.scheduling.model import ClusterSnapshot, Placement, Plan, Shape, Unplaced, Workload
from gpucloud.scheduling.policies import Scorer
from gpucloud.scheduling.state import ClusterState, IntArray

_DEDUPE_AT = 256  # stale nodes at which grouping identical states pays for itself


@dataclass
class _Cache:
    version: IntArray  # node version the entry was computed at (-1: never)
    score: FloatArray  # -inf where the node cannot take the shape
    device: IntArray


class Placer:
    def __init__(self, state: ClusterState, scorer: Scorer,
                 filters: Sequence[Filter] = DEFAULT_FILTERS,
                 rank: IntArray | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.state = state
        self.scorer = scorer
        self.filters = tuple(filters)
        n = len(state)
        self.rank = np.arange(n, dtype=np.int64) if rank is None else rank
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._caches: dict[Shape, _Cache] = {}
        # why_pending per shape, valid while the state has not changed: a long queue of one
        # blocked shape is explained once, not once per workload.
        self._explained: dict[Shape, tuple[int, str]] = {}
        # A per-node constant some scorers add (e.g. a pull towards the tie order); kept out
        # of the scorer so identical node states can share one score.
        node_bias = getattr(scorer, "node_bias", None)
        self.bias: FloatArray | None = node_bias(self.rank) if node_bias is not None else None

    def _refresh(self, shape: Shape) -> _Cache:
        n = len(self.state)
        cache = self._caches.get(shape)
        if cache is None:
            cache = _Cache(np.full(n, -1, dtype=np.int64), np.full(n, -np.inf),
                           np.full(n, -1, dtype=np.int64))
            self._caches[shape] = cache
        stale = np.flatnonzero(cache.version != self.state.version)
        if stale.size:
            ok = feasible(self.state, shape, stale, self.filters)
            cache.score[stale] = -np.inf
            fit = stale[ok]
            if fit.size:
                score, device = self._score(shape, fit, first_fill=bool(cache.version[0] < 0))
                if self.bias is not None:
                    score = score + self.bias[fit]
                cache.score[fit] = score
                cache.device[fit] = device
            cache.version[stale] = self.state.version[stale]
        return cache

    def _score(self, shape: Shape, idx: IntArray,
               first_fill: bool) -> tuple[FloatArray, IntArray]:
        """On a shape's first fill, score each distinct node state once: most nodes are
        still identical (empty). Later refreshes touch few nodes and skip the grouping."""
        st = self.state
        if not first_fill or idx.size < _DEDUPE_AT:
            return self.scorer.score(st, shape, idx)
        key = np.column_stack((st.cpu_free[idx], st.mem_free[idx], st.gpu_free[idx],
                               st.gpu_model[idx], st.gpu_ok[idx], st.kinds[idx]))
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        if first.size == idx.size:
            return self.scorer.score(st, shape, idx)
        score, device = self.scorer.score(st, shape, idx[first])
        inverse = inverse.reshape(-1)
        return score[inverse], device[inverse]

    def choose(self, shape: Shape) -> tuple[int, int] | None:
        """(node, device) for the shape, or None if no node can take it now."""
        cache = self._refresh(shape)
        if self.scorer.random:
            fit = np.flatnonzero(cache.score > -np.inf)
            if fit.size == 0:
                return None
            node = int(fit[self.rng.integers(fit.size)])
            return node, int(cache.device[node])
        best = cache.score.max(initial=-np.inf)
        if best == -np.inf:
            return None
        top = np.flatnonzero(cache.score == best)
        node = int(top[np.argmin(self.rank[top])]) if top.size > 1 else int(top[0])
        return node, int(cache.device[node])

    def place(self, workload: Workload) -> Placement | None:
        shape = workload.shape
        choice = self.choose(shape)
        if choice is None:
            return None
        node, device = choice
        return self.state.claim(node, workload, self.state.choose_devices(node, shape, device))

    def explain(self, workload: Workload) -> str:
        shape = workload.shape
        cached = self._explained.get(shape)
        if cached is not None and cached[0] == self.state.changes:
            return cached[1]
        message = why_pending(len(self.state), rejections(self.state, shape, self.filters))
        self._explained[shape] = (self.state.changes, message)
        return message


def place(cluster: ClusterSnapshot, queue: Sequence[Workload], scorer: Scorer,
          filters: Sequence[Filter] = DEFAULT_FILTERS) -> Plan:
    """Place what fits in queue order (priority first, then submission order); report why the
    rest waits. A workload that does not fit does not block smaller ones behind it."""
    placer = Placer(ClusterState.from_snapshot(cluster), scorer, filters)
    placed: list[Placement] = []
    pending: list[Unplaced] = []
    order = sorted(range(len(queue)), key=lambda i: (-queue[i].priority, i))
    for i in order:
        workload = queue[i]
        placement = placer.place(workload)
        if placement is None:
            pending.append(Unplaced(workload.id, placer.explain(workload)))
        else:
            placed.append(placement)
    return Plan(tuple(placed), tuple(pending))
