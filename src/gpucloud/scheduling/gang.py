"""Gangs: all members placed in one topology domain, or none of them.

Domains are tried from the tightest level up: one node, one NVLink island, one leaf switch, one
rack, the whole cluster, stopping at the gang's allowed level. A node with an unknown domain at a
level (empty label) forms a domain with its finer one, so unlabelled nodes never get grouped by
accident. Within a level, domains with the least free GPU go first (best fit), keeping large
domains whole for larger gangs; a domain whose totals cannot cover the gang is not tried.
Members are claimed one by one with the scorer and all released if any does not fit, so a
partial gang never survives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gpucloud.scheduling.engine import Placer
from gpucloud.scheduling.filters import DEFAULT_FILTERS, Filter, feasible
from gpucloud.scheduling.model import MILLI, Node, Placement, Workload
from gpucloud.scheduling.policies import Scorer
from gpucloud.scheduling.state import BoolArray, ClusterState, IntArray

LEVELS = ("node", "nvlink_island", "leaf_switch", "rack", "cluster")
LEVEL_WORDS = {"node": "node", "nvlink_island": "NVLink island", "leaf_switch": "leaf switch",
               "rack": "rack", "cluster": "cluster"}


def domain_key(node: Node, level: str) -> str:
    """The node's domain at ``level``, falling back to the nearest finer known domain."""
    if level == "cluster":
        return "cluster"
    labels = {"nvlink_island": node.topology.nvlink_island,
              "leaf_switch": node.topology.leaf_switch, "rack": node.topology.rack}
    for finer in reversed(LEVELS[1:LEVELS.index(level) + 1]):
        if labels[finer]:
            return f"{finer}:{labels[finer]}"
    return f"node:{node.name}"


@dataclass(frozen=True)
class Layout:
    """One level's domains as segments of a node permutation, for per-domain sums."""

    nodes: IntArray  # node indices grouped by domain, domains in ``by_level`` order
    starts: IntArray  # where each domain's segment begins in ``nodes``
    fresh: BoolArray  # False where a domain holds exactly the nodes of a finer one


@dataclass(frozen=True)
class Domains:
    """Node indices (in ClusterState order) of every domain, per level."""

    by_level: dict[str, tuple[tuple[str, IntArray], ...]]
    gpus: IntArray  # devices per node
    _layouts: dict[str, Layout] = field(default_factory=dict, compare=False, repr=False)
    _most: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, nodes: Sequence[Node]) -> Domains:
        by_level: dict[str, tuple[tuple[str, IntArray], ...]] = {}
        for level in LEVELS:
            groups: dict[str, list[int]] = {}
            for i, n in enumerate(nodes):
                groups.setdefault(domain_key(n, level), []).append(i)
            by_level[level] = tuple((k, np.array(v, dtype=np.int64))
                                    for k, v in sorted(groups.items()))
        return cls(by_level, np.array([len(n.devices) for n in nodes], dtype=np.int64))

    def most_gpus(self, level: str) -> int:
        """Devices in the largest domain of ``level``, free or not."""
        most = self._most.get(level)
        if most is None:
            layout = self.layout(level)
            sizes = (np.add.reduceat(self.gpus[layout.nodes], layout.starts)
                     if layout.nodes.size else np.zeros(1, dtype=np.int64))
            most = self._most[level] = int(sizes.max())
        return most

    def layout(self, level: str) -> Layout:
        """Built on first use (passes without gangs never pay for it). A domain is not fresh
        when its nodes are exactly one domain of a finer level: all in the same one, and as
        many."""
        if not self._layouts:
            count = 1 + max((int(idx.max()) for _, idx in self.by_level["node"]), default=-1)
            domain_of: dict[str, IntArray] = {}
            sizes_of: dict[str, IntArray] = {}
            for lv in LEVELS:
                domains = self.by_level[lv]
                sizes = np.array([idx.size for _, idx in domains], dtype=np.int64)
                nodes = (np.concatenate([idx for _, idx in domains]) if domains
                         else np.zeros(0, dtype=np.int64))
                starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
                fresh = np.ones(len(domains), dtype=np.bool_)
                for finer, their in domain_of.items():
                    if not domains:
                        break
                    ids = their[nodes]
                    low = np.minimum.reduceat(ids, starts)
                    same = (low == np.maximum.reduceat(ids, starts)) & (sizes_of[finer][low]
                                                                         == sizes)
                    fresh &= ~same
                owner = np.zeros(count, dtype=np.int64)
                owner[nodes] = np.repeat(np.arange(len(domains)), sizes)
                domain_of[lv], sizes_of[lv] = owner, sizes
                self._layouts[lv] = Layout(nodes, starts, fresh)
        return self._layouts[level]


def allowed_levels(max_level: str) -> tuple[str, ...]:
    if max_level not in LEVELS:
        raise ValueError(f"unknown topology level {max_level!r}; one of {', '.join(LEVELS)}")
    return LEVELS[: LEVELS.index(max_level) + 1]


def _bounds(state: ClusterState, members: Sequence[Workload]) -> tuple[IntArray, IntArray]:
    """Per healthy node, amounts whose sum over a domain must reach the gang's (the second
    array) for the domain to be worth trying: free CPU, memory and GPU milli; fully free GPUs
    (what whole-GPU members can use); and per distinct whole-GPU member shape, how many such
    members the node could hold alone. Taking one member lowers that count by exactly one,
    so for a gang of equal members the last test is also sufficient."""
    whole = [w for w in members if w.gpu_count and w.gpu_milli == MILLI]
    rows = [state.cpu_free, state.mem_free, state.sum_free, state.full_free]
    need = [sum(w.cpu_milli for w in members), sum(w.memory_mib for w in members),
            sum(w.total_gpu_milli for w in members), sum(w.gpu_count for w in whole)]
    counts: dict[tuple[int, int, int], int] = {}
    for w in whole:
        key = (w.gpu_count, w.cpu_milli, w.memory_mib)
        counts[key] = counts.get(key, 0) + 1
    for (gpus, cpu, mem), count in counts.items():
        fit = state.full_free // gpus
        if cpu:
            fit = np.minimum(fit, np.maximum(state.cpu_free, 0) // cpu)
        if mem:
            fit = np.minimum(fit, np.maximum(state.mem_free, 0) // mem)
        rows.append(fit)
        need.append(count)
    return np.stack(rows) * state.healthy, np.array(need, dtype=np.int64)


def _claim_in(state: ClusterState, scorer: Scorer, members: Sequence[Workload], idx: IntArray,
              filters: Sequence[Filter], placer: Placer | None) -> list[Placement] | None:
    placed: list[Placement] = []
    spread = any(w.one_per_node for w in members)
    for w in members:
        shape = w.shape
        if spread and placed:  # each member on a node of its own
            idx = idx[~np.isin(idx, [state.index[p.node] for p in placed])]
        if placer is not None:
            choice = placer.choose_in(shape, idx)
        else:
            fit = idx[feasible(state, shape, idx, filters)]
            choice = None
            if fit.size:
                score, device = scorer.score(state, shape, fit)
                # Highest score; ties (and random scorers' flat scores) to the first node.
                k = int(np.flatnonzero(score == score.max())[0])
                choice = int(fit[k]), int(device[k])
        if choice is None:
            for p in reversed(placed):
                state.release(p)
            return None
        node, dev = choice
        placed.append(state.claim(node, w, state.choose_devices(node, shape, dev)))
    return placed


def place_gang(state: ClusterState, scorer: Scorer, members: Sequence[Workload],
               domains: Domains, max_level: str, filters: Sequence[Filter] = DEFAULT_FILTERS,
               placer: Placer | None = None) -> tuple[list[Placement], str] | None:
    """Claim every member inside one domain of the tightest level that takes them all, and
    return the placements with that level; None (and nothing claimed) if no domain does.
    ``placer`` (on ``state``, with ``scorer`` and ``filters``) makes member choices from its
    score caches; the choices are the same."""
    # Largest members first: they are the hardest to fit once the small ones are down.
    ordered = sorted(members, key=lambda w: (-w.total_gpu_milli, -w.cpu_milli, w.id))
    rooms, need = _bounds(state, members)
    spread = len(members) > 1 and any(w.one_per_node for w in members)
    if spread:  # a domain needs as many healthy nodes as the gang has members
        rooms = np.vstack((rooms, state.healthy.astype(np.int64)))
        need = np.append(need, len(members))
    for level in allowed_levels(max_level):
        if spread and level == "node":
            continue
        layout = domains.layout(level)
        if not layout.fresh.any() or domains.most_gpus(level) * MILLI < need[2]:
            continue  # no domain of this level has as many GPUs, free or not
        room = np.add.reduceat(rooms[:, layout.nodes], layout.starts, axis=1)
        fits = layout.fresh & (room >= need[:, None]).all(axis=0)
        candidates = np.flatnonzero(fits)
        # Fullest first (least free GPU milli), then by domain name (their order here).
        for d in candidates[np.argsort(room[2, candidates], kind="stable")]:
            placed = _claim_in(state, scorer, ordered, domains.by_level[level][d][1], filters,
                               placer)
            if placed is not None:
                return placed, level
    return None
