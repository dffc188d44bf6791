"""Scores of every shape seen so far on every node, shared by nodes in the same state.

For a scorer that scores a node from the node's own state (FGD and ``fragaware``), nodes whose
CPU, device model and free milli per healthy device are equal have equal scores for every
shape. Each such state gets an id; its scores for all shapes (memory aside: no scorer reads
it) are computed once, in one vectorised pass (``column``), when a node first enters it: about
half of all placements lead to a state some node has been in before.

Per shape, a row by tie position holds each node's score plus its bias, or -inf where the
node cannot take it, so a decision is one ``argmax``; after a change, only the changed nodes'
entries are rewritten. Memory is checked on the winner; when it lacks memory (often: the
openb pods ask for about 50 GiB per GPU), the row is searched again masked by free memory.

States are keyed by free CPU and the sorted free milli of the devices (scores do not depend on
which device holds what; a fraction's device is picked on the chosen node itself). Nodes with
devices of several models get a state of their own per change.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from gpucloud.scheduling.frag import FloatArray
from gpucloud.scheduling.frag_column import Plan
from gpucloud.scheduling.frag_tables import Keys
from gpucloud.scheduling.model import Shape
from gpucloud.scheduling.state import ClusterState, IntArray

Key = tuple[int, int, int, frozenset[str] | None]  # a shape without memory


class BlockScorer(Protocol):
    def score_block(self, state: ClusterState, idx: IntArray,
                    keys: Keys) -> tuple[FloatArray, IntArray]: ...

    def plan(self, state: ClusterState, keys: Keys) -> Plan: ...

    def column(self, state: ClusterState, node: int, plan: Plan) -> IntArray: ...

    def fraction_device(self, state: ClusterState, node: int, shape: Shape) -> int: ...


A = TypeVar("A", bound=npt.NDArray[np.generic])


def _grow(a: A, rows: int, cols: int, fill: float) -> A:
    out: A = np.full((rows, cols), fill, dtype=a.dtype)  # type: ignore[assignment]
    out[: a.shape[0], : a.shape[1]] = a
    return out


class ScoreMatrix:
    def __init__(self, state: ClusterState, scorer: BlockScorer, order: IntArray,
                 bias: FloatArray | None) -> None:
        self.state, self.scorer, self.order = state, scorer, order
        n = len(state)
        self.pos = np.empty(n, dtype=np.int64)
        self.pos[order] = np.arange(n, dtype=np.int64)
        self.bias = np.zeros(n) if bias is None else bias  # by node
        present = np.arange(state.width) < state.gpu_count[:, None]
        uniform = ((state.gpu_model == state.gpu_model[:, :1]) | ~present).all(axis=1)
        self._model = [int(m) if u else -1 for m, u in zip(state.gpu_model[:, 0].tolist(),
                                                           uniform.tolist(), strict=True)]
        all_ok = np.asarray((state.gpu_ok | ~present).all(axis=1), dtype=np.bool_)
        self._all_ok: list[bool] = all_ok.tolist()
        self.shapes: list[Shape] = []  # scored shapes (memory 0), by key index
        self.index: dict[Key, int] = {}
        self.keys = Keys.build([], state)
        self.plan = scorer.plan(state, self.keys)
        self._stale_keys = False
        self._ids: dict[tuple[int, ...], int] = {}
        self.known = np.zeros(64, dtype=np.int64)  # per state: scores known for keys < this
        self.score = np.full((64, 8), -1, dtype=np.int8)  # [state, key]
        self.sid = np.array([self._id(i) for i in range(n)], dtype=np.int64)
        self.seen = len(state.changed)
        self.rows = np.full((8, n), -np.inf)  # [key, tie position]
        self.memory = state.mem_free[order]  # by tie position
        # Per key, the least memory any shape asked with it: a row holds -inf where a node has
        # less free, so the winner of a row lacks memory rarely (1 in 18 decisions at 5,000
        # nodes, against 3 in 4 without), and the masked search after it is rare too.
        self.min_memory = np.zeros(8, dtype=np.int64)
        self._most_memory = 0  # the largest of them: nodes with that much free mask nothing
        self._lowered: set[int] = set()  # keys whose least memory fell: rows to rewrite
        # Unhealthy nodes take nothing, nor do nodes with negative free memory.
        self._live = np.where(state.healthy, self.bias, -np.inf)
        # A state's score as a row entry before the bias: points as they are, -1 (indexed
        # last) for a shape that cannot go; per node, with its bias added (one lookup).
        self._points = np.append(np.arange(101, dtype=np.float64), -np.inf)
        self._node_points = self._points + self._live[:, None]
        self._pos: list[int] = self.pos.tolist()

    def _id(self, node: int) -> int:
        st = self.state
        free = st.gpu_free[node].tolist()
        if not self._all_ok[node]:
            free = [v if ok else 0 for v, ok in zip(free, st.gpu_ok[node].tolist(), strict=True)]
        model = self._model[node]
        key = (model, int(st.cpu_free[node]), *sorted(free)) if model >= 0 else (
            -1, node, int(st.version[node]))  # mixed models: shared with no other node
        sid = self._ids.get(key)
        if sid is None:
            sid = self._ids[key] = len(self._ids)
            if sid >= self.known.size:
                self.known = np.concatenate((self.known, np.zeros_like(self.known)))
                self.score = _grow(self.score, self.known.size, self.score.shape[1], -1)
        return sid

    def _current(self) -> None:
        """Rebuild the shape arrays after new shapes (once, not per shape added)."""
        if self._stale_keys:
            self.keys = Keys.build(self.shapes, self.state)
            self.plan = self.scorer.plan(self.state, self.keys)
            self._stale_keys = False

    def _fill_states(self, nodes: IntArray, keys: Keys, first: int) -> None:
        """Scores of ``keys`` (key indices ``first``...) for the states of ``nodes``."""
        if nodes.size == 1:
            sids, at = self.sid[nodes], np.zeros(1, dtype=np.int64)
        else:
            sids, at = np.unique(self.sid[nodes], return_index=True)
        last = first + len(keys.shapes)
        if sids.size <= 4 and len(keys.shapes) > 1:  # a few new states: one column each
            for sid, node in zip(sids.tolist(), nodes[at].tolist(), strict=True):
                self.score[sid, first:last] = self.scorer.column(self.state, node, self.plan)
        else:
            self.score[sids, first:last] = self.scorer.score_block(self.state, nodes[at],
                                                                   keys)[0]
        self.known[sids] = last

    def sync(self) -> None:
        """Take in the nodes changed since the last call: their states and row entries."""
        log = self.state.changed
        if self.seen == len(log):
            return
        if self.seen + 1 == len(log):  # one decision since the last call: one node
            self.seen += 1
            self._sync_one(log[-1])
            return
        changed = log[self.seen:]
        self.seen = len(log)
        nodes = sorted(set(changed))
        stale = []
        for i in nodes:
            sid = self.sid[i] = self._id(i)
            if self.known[sid] < len(self.shapes):
                stale.append(i)
        if stale:
            self._current()
            self._fill_states(np.array(stale, dtype=np.int64), self.keys, 0)
        self._write(np.array(nodes, dtype=np.int64), 0)

    def _sync_one(self, node: int) -> None:
        sid = self._id(node)
        self.sid[node] = sid
        k, p = len(self.shapes), self._pos[node]
        mem = int(self.state.mem_free[node])
        if self.known[sid] < k:  # a new state: its scores for every shape
            self._current()
            self.known[sid] = k
            self.score[sid, :k] = self.scorer.column(self.state, node, self.plan)
        row = self.rows[:k, p]
        if mem >= self._most_memory:  # no key asks for more: score + bias, one lookup
            self._node_points[node].take(self.score[sid, :k], out=row, mode="wrap")
        elif mem >= 0:
            np.copyto(row, np.where(mem >= self.min_memory[:k],
                                    self._node_points[node].take(self.score[sid, :k]),
                                    -np.inf))
        else:
            row[:] = -np.inf
        self.memory[p] = mem

    def _write(self, nodes: IntArray, first: int, last: int | None = None) -> None:
        """Rows ``first``...``last`` (default: all from ``first``) at the tie positions of
        ``nodes``, from their states' scores."""
        last = len(self.shapes) if last is None else last
        mem = self.state.mem_free[nodes]
        live = np.where(mem >= 0, self._live[nodes], -np.inf)
        points = self._points.take(self.score[self.sid[nodes], first:last].T)
        pos = self.pos[nodes]
        self.rows[first:last, pos] = np.where(mem >= self.min_memory[first:last, None],
                                              points + live, -np.inf)
        self.memory[pos] = mem

    def _memory_asked(self, k: int, memory: int) -> None:
        if memory < self.min_memory[k]:
            self.min_memory[k] = memory
            self._most_memory = int(self.min_memory[: len(self.shapes)].max())
            self._lowered.add(k)  # rewritten when next chosen from: prepare lowers many

    def key(self, shape: Shape) -> int:
        """The scores of ``shape`` (memory aside), on every node's state when first seen."""
        key = (shape.cpu_milli, shape.gpu_count, shape.gpu_milli, shape.gpu_models)
        k = self.index.get(key)
        if k is not None:
            if shape.memory_mib < self.min_memory[k]:
                self._memory_asked(k, shape.memory_mib)
            return k
        k = self.index[key] = len(self.shapes)
        self.shapes.append(Shape(shape.cpu_milli, 0, shape.gpu_count, shape.gpu_milli,
                                 shape.gpu_models))
        self._stale_keys = True
        if k >= self.score.shape[1]:
            self.score = _grow(self.score, self.score.shape[0], 2 * k, -1)
        if k >= self.rows.shape[0]:
            self.rows = _grow(self.rows, 2 * k, self.rows.shape[1], -np.inf)
            self.min_memory = np.concatenate(
                (self.min_memory, np.zeros(self.rows.shape[0] - self.min_memory.size,
                                           dtype=np.int64)))
        self.min_memory[k] = shape.memory_mib
        self._most_memory = max(self._most_memory, shape.memory_mib)
        # Every state a node is in now knows keys < k (sync keeps them complete).
        everyone = np.arange(len(self.state), dtype=np.int64)
        self._fill_states(everyone, Keys.build([self.shapes[k]], self.state), k)
        self._write(everyone, k)
        return k

    def choose(self, shape: Shape) -> tuple[int, int] | None:
        """(node, device) of the best node for ``shape``, or None if none can take it."""
        self.sync()
        k = self.key(shape)  # may grow self.rows: index it after
        if self._lowered:
            self._rewrite()
        row = self.rows[k]
        p = int(row.argmax())
        if row[p] == -np.inf:
            return None
        memory = shape.memory_mib
        if self.memory[p] < memory:
            row = np.where(self.memory >= memory, row, -np.inf)
            p = int(row.argmax())
            if row[p] == -np.inf:
                return None
        return self._with_device(int(self.order[p]), shape)

    def _rewrite(self) -> None:
        everyone = np.arange(len(self.state), dtype=np.int64)
        for k in sorted(self._lowered):
            self._write(everyone, k, k + 1)
        self._lowered.clear()

    def _with_device(self, node: int, shape: Shape) -> tuple[int, int]:
        if not shape.is_fractional:
            return node, -1
        return node, self.scorer.fraction_device(self.state, node, shape)

    def choose_in(self, shape: Shape, idx: IntArray) -> tuple[int, int] | None:
        """Best of the nodes ``idx`` by the scorer's own score (no bias), ties to the first
        in ``idx``: how a gang member picks its node within a domain."""
        self.sync()
        k = self.key(shape)
        st = self.state
        score = self.score[self.sid[idx], k]
        ok = (score >= 0) & st.healthy[idx] & (st.mem_free[idx] >= shape.memory_mib)
        if not ok.any():
            return None
        return self._with_device(int(idx[int(np.where(ok, score, -2).argmax())]), shape)
