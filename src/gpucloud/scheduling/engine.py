"""Placement decisions over a free-capacity index, with per-shape score caches.

A node's score for a shape depends only on that node's free capacity, so each shape keeps its
last score for every node; a decision rescores only the nodes that the state's change log names
since the shape was last seen, then takes the best node. Caches are laid out in tie order (by
rank, by default the node list order), so the first maximum is the best node and ties go to the
lowest rank, which packs deterministically.

With the default filters, shapes that differ only in memory share one cache (no scorer reads
memory) and memory is checked on the winner; when the winner lacks it, a search masked by free
memory follows. A shape's first fill scores each group of nodes that are still in one identical
initial state once.

Scorers that score a node from its own state in blocks (``score_block``: FGD, fragaware) move,
after the first ``_MATRIX_AFTER`` decisions, to a ``ScoreMatrix``: one column of scores per
distinct node state for all shapes at once, which a long pass amortises.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from gpucloud.scheduling.filters import DEFAULT_FILTERS, Filter, feasible, rejections, why_pending
from gpucloud.scheduling.frag import FloatArray
from gpucloud.scheduling.matrix import ScoreMatrix
from gpucloud.scheduling.model import ClusterSnapshot, Placement, Plan, Shape, Unplaced, Workload
from gpucloud.scheduling.policies import Scorer
from gpucloud.scheduling.state import ClusterState, IntArray

_GROUP_AT = 256  # nodes from which grouping identical initial states pays for itself
_DEDUPE_AT = 32  # logged changes from which repeated nodes are dropped before rescoring
_MATRIX_AFTER = 64  # decisions before a block scorer's pass builds its score matrix

Key = tuple[int, int, int, int, frozenset[str] | None, frozenset[str]]


@dataclass
class _Cache:
    shape: Shape  # what is scored (memory 0 when the cache is shared across memory sizes)
    seen: int  # length of the state's change log when last refreshed
    score: FloatArray  # by tie position; -inf where the node cannot take the shape
    device: IntArray  # by tie position


class Placer:
    def __init__(self, state: ClusterState, scorer: Scorer,
                 filters: Sequence[Filter] = DEFAULT_FILTERS,
                 rank: IntArray | None = None,
                 rng: np.random.Generator | None = None, *,
                 matrix_after: int | None = _MATRIX_AFTER) -> None:
        """``matrix_after``: decisions after which a block scorer switches to a score
        matrix (None: never; the decisions are the same either way)."""
        self.state = state
        self.scorer = scorer
        self.filters = tuple(filters)
        n = len(state)
        self.rank = np.arange(n, dtype=np.int64) if rank is None else rank
        self.rng = rng if rng is not None else np.random.default_rng(0)
        # Tie order: position p holds node order[p]; equal ranks keep node order.
        self.order = np.argsort(self.rank, kind="stable").astype(np.int64)
        self.pos = np.empty(n, dtype=np.int64)
        self.pos[self.order] = np.arange(n, dtype=np.int64)
        self._shared_memory = self.filters == DEFAULT_FILTERS
        self._caches: dict[Key, _Cache] = {}
        self._start = len(state.changed)
        self._groups: IntArray | None = None  # initial-state group of each node
        # why_pending per shape, valid while the state has not changed: a long queue of one
        # blocked shape is explained once, not once per workload.
        self._explained: dict[Shape, tuple[int, str]] = {}
        # A per-node constant some scorers add (e.g. a pull towards the tie order); kept out
        # of the scorer so identical node states can share one score.
        node_bias = getattr(scorer, "node_bias", None)
        self.bias: FloatArray | None = node_bias(self.rank) if node_bias is not None else None
        self._blocks = (self._shared_memory and not scorer.random and matrix_after is not None
                        and hasattr(scorer, "score_block"))
        self._matrix_after = matrix_after or 0
        self._decisions = 0
        self.matrix: ScoreMatrix | None = None

    def prepare(self, shapes: Iterable[Shape]) -> None:
        """Shapes a long pass will ask for: a block scorer scores them all now, while most
        nodes still share a few states, instead of one by one on first use."""
        if not self._blocks:
            return
        if self.matrix is None:
            self.matrix = ScoreMatrix(self.state, self.scorer,  # type: ignore[arg-type]
                                      self.order, self.bias)
        self.matrix.sync()
        for shape in shapes:
            self.matrix.key(shape)

    def _use_matrix(self) -> ScoreMatrix | None:
        if self.matrix is None and self._blocks:
            self._decisions += 1
            if self._decisions > self._matrix_after:
                self.matrix = ScoreMatrix(self.state, self.scorer,  # type: ignore[arg-type]
                                          self.order, self.bias)
        return self.matrix

    def _evaluate(self, shape: Shape, idx: IntArray) -> tuple[FloatArray, IntArray]:
        """Scores (-inf where infeasible; no bias) and devices of the nodes ``idx``."""
        ok = feasible(self.state, shape, idx, self.filters)
        score = np.full(idx.size, -np.inf)
        device = np.full(idx.size, -1, dtype=np.int64)
        if ok.any():
            score[ok], device[ok] = self.scorer.score(self.state, shape, idx[ok])
        return score, device

    def _store(self, cache: _Cache, idx: IntArray, score: FloatArray, device: IntArray) -> None:
        pos = self.pos[idx]
        cache.score[pos] = score if self.bias is None else score + self.bias[idx]
        cache.device[pos] = device

    def _fill(self, cache: _Cache, idx: IntArray) -> None:
        self._store(cache, idx, *self._evaluate(cache.shape, idx))

    def _first_fill(self, cache: _Cache) -> None:
        """Score every node: one representative per group of untouched identical nodes, and
        each node changed since the placer started on its own."""
        st, n = self.state, len(self.state)
        if n < _GROUP_AT:
            self._fill(cache, np.arange(n, dtype=np.int64))
            return
        if self._groups is None:
            rows = np.column_stack((st.cpu_free, st.mem_free, st.healthy, st.gpu_free,
                                    st.gpu_model, st.gpu_ok, st.kinds)).astype(np.int64)
            packed = np.ascontiguousarray(rows).view(
                np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
            self._groups = np.unique(packed, return_inverse=True)[1].reshape(-1)
        untouched = np.ones(n, dtype=np.bool_)
        touched = np.unique(np.array(st.changed[self._start:], dtype=np.int64))
        untouched[touched] = False
        same = np.flatnonzero(untouched)
        _, first, inverse = np.unique(self._groups[same], return_index=True,
                                      return_inverse=True)
        score, device = self._evaluate(cache.shape, same[first])
        inverse = inverse.reshape(-1)
        self._store(cache, same, score[inverse], device[inverse])
        if touched.size:
            self._fill(cache, touched)

    def _refresh(self, shape: Shape) -> _Cache:
        shared = self._shared_memory
        key = (shape.cpu_milli, 0 if shared else shape.memory_mib, shape.gpu_count,
               shape.gpu_milli, shape.gpu_models, shape.datasets)
        cache = self._caches.get(key)
        log = self.state.changed
        if cache is None:
            n = len(self.state)
            scored = Shape(shape.cpu_milli, 0, shape.gpu_count, shape.gpu_milli,
                           shape.gpu_models, shape.datasets) if shared else shape
            cache = _Cache(scored, len(log), np.full(n, -np.inf), np.full(n, -1, dtype=np.int64))
            self._caches[key] = cache
            self._first_fill(cache)
        elif cache.seen < len(log):
            idx = np.array(log[cache.seen:], dtype=np.int64)
            cache.seen = len(log)
            self._fill(cache, np.unique(idx) if idx.size >= _DEDUPE_AT else idx)
        return cache

    def choose(self, shape: Shape) -> tuple[int, int] | None:
        """(node, device) for the shape, or None if no node can take it now."""
        matrix = self._use_matrix()
        if matrix is not None:
            return matrix.choose(shape)
        cache = self._refresh(shape)
        memory = shape.memory_mib if self._shared_memory else 0
        if self.scorer.random:
            nodes = np.sort(self.order[np.flatnonzero(cache.score > -np.inf)])
            if memory:
                nodes = nodes[self.state.mem_free[nodes] >= memory]
            if nodes.size == 0:
                return None
            node = int(nodes[self.rng.integers(nodes.size)])
            return node, int(cache.device[self.pos[node]])
        score = cache.score
        p = int(score.argmax())
        if score[p] == -np.inf:
            return None
        if memory and self.state.mem_free[self.order[p]] < memory:
            score = np.where(self.state.mem_free[self.order] >= memory, score, -np.inf)
            p = int(score.argmax())
            if score[p] == -np.inf:
                return None
        return int(self.order[p]), int(cache.device[p])

    def choose_in(self, shape: Shape, idx: IntArray) -> tuple[int, int] | None:
        """Best of the nodes ``idx`` by the scorer's own score (no bias), ties to the first in
        ``idx`` (how a gang member picks its node within a domain), or None."""
        matrix = self._use_matrix()
        if matrix is not None:
            return matrix.choose_in(shape, idx)
        fit = idx[feasible(self.state, shape, idx, self.filters)]
        if fit.size == 0:
            return None
        score, device = self.scorer.score(self.state, shape, fit)
        k = int(np.flatnonzero(score == score.max())[0])  # random scorers: the first node
        return int(fit[k]), int(device[k])

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
