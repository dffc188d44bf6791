"""Gangs: all members placed in one topology domain, or none of them.

Domains are tried from the tightest level up: one node, one NVLink island, one leaf switch, one
rack, the whole cluster, stopping at the gang's allowed level. A node with an unknown domain at a
level (empty label) forms a domain with its finer one, so unlabelled nodes never get grouped by
accident. Within a level, domains with the least free GPU go first (best fit), keeping large
domains whole for larger gangs. Members are claimed one by one with the scorer and all released
if any does not fit, so a partial gang never survives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpucloud.scheduling.filters import DEFAULT_FILTERS, Filter, feasible
from gpucloud.scheduling.model import Node, Placement, Workload
from gpucloud.scheduling.policies import Scorer
from gpucloud.scheduling.state import ClusterState, IntArray

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
class Domains:
    """Node indices (in ClusterState order) of every domain, per level."""

    by_level: dict[str, tuple[tuple[str, IntArray], ...]]

    @classmethod
    def build(cls, nodes: Sequence[Node]) -> Domains:
        by_level: dict[str, tuple[tuple[str, IntArray], ...]] = {}
        for level in LEVELS:
            groups: dict[str, list[int]] = {}
            for i, n in enumerate(nodes):
                groups.setdefault(domain_key(n, level), []).append(i)
            by_level[level] = tuple((k, np.array(v, dtype=np.int64))
                                    for k, v in sorted(groups.items()))
        return cls(by_level)


def allowed_levels(max_level: str) -> tuple[str, ...]:
    if max_level not in LEVELS:
        raise ValueError(f"unknown topology level {max_level!r}; one of {', '.join(LEVELS)}")
    return LEVELS[: LEVELS.index(max_level) + 1]


def _room(state: ClusterState, idx: IntArray) -> tuple[int, int, int]:
    """Free CPU, memory and healthy GPU milli of a domain: a cheap upper bound on what fits."""
    ok = state.healthy[idx]
    return (int(state.cpu_free[idx][ok].sum()), int(state.mem_free[idx][ok].sum()),
            int((state.gpu_free[idx] * state.gpu_ok[idx])[ok].sum()))


def _claim_in(state: ClusterState, scorer: Scorer, members: Sequence[Workload], idx: IntArray,
              filters: Sequence[Filter]) -> list[Placement] | None:
    placed: list[Placement] = []
    for w in members:
        shape = w.shape
        fit = idx[feasible(state, shape, idx, filters)]
        if fit.size == 0:
            for p in reversed(placed):
                state.release(p)
            return None
        score, device = scorer.score(state, shape, fit)
        # Highest score; ties (and random scorers' flat scores) to the first node in order.
        k = int(np.flatnonzero(score == score.max())[0])
        node = int(fit[k])
        placed.append(state.claim(node, w, state.choose_devices(node, shape, int(device[k]))))
    return placed


def place_gang(state: ClusterState, scorer: Scorer, members: Sequence[Workload],
               domains: Domains, max_level: str,
               filters: Sequence[Filter] = DEFAULT_FILTERS) -> tuple[list[Placement], str] | None:
    """Claim every member inside one domain of the tightest level that takes them all, and
    return the placements with that level; None (and nothing claimed) if no domain does."""
    # Largest members first: they are the hardest to fit once the small ones are down.
    ordered = sorted(members, key=lambda w: (-w.total_gpu_milli, -w.cpu_milli, w.id))
    need = (sum(w.cpu_milli for w in members), sum(w.memory_mib for w in members),
            sum(w.total_gpu_milli for w in members))
    tried: set[frozenset[int]] = set()
    for level in allowed_levels(max_level):
        candidates = []
        for key, idx in domains.by_level[level]:
            span = frozenset(idx.tolist())
            if span in tried:  # same nodes as a finer domain already tried
                continue
            tried.add(span)
            room = _room(state, idx)
            if all(r >= n for r, n in zip(room, need, strict=True)):
                candidates.append((room[2], key, idx))
        for _, _, idx in sorted(candidates, key=lambda c: (c[0], c[1])):
            placed = _claim_in(state, scorer, ordered, idx, filters)
            if placed is not None:
                return placed, level
    return None
