"""A scorer plugin: prefer nodes whose dataset cache already holds a workload's dataset
versions (no copy before the job starts). Pure.

It wraps the pass's scorer and adds up to ``bonus`` points, in proportion to the share of the
workload's versions a node holds. Scores are on a 0..100 point scale; the default 5 points
outweigh the fragmentation-aware scorer's pull towards the node order (at most 3 points), so
of otherwise equal nodes the one holding the data wins, while a placement better by more than
that still wins on its own merits. The workload's versions travel in its ``Shape`` (so the
placer's per-shape caches never mix workloads that want different data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gpucloud.scheduling.frag import FloatArray
from gpucloud.scheduling.model import Shape, Workload
from gpucloud.scheduling.policies import Scorer
from gpucloud.scheduling.state import ClusterState, IntArray

DEFAULT_BONUS = 5.0


@dataclass
class DatasetAffinityScorer:
    base: Scorer
    cached: Mapping[str, frozenset[str]]  # node name -> dataset version ids in its cache
    bonus: float = DEFAULT_BONUS
    name: str = "dataset-affinity"
    random: bool = False

    def __post_init__(self) -> None:
        self.random = self.base.random

    def node_bias(self, rank: IntArray) -> FloatArray:
        base = getattr(self.base, "node_bias", None)
        return base(rank) if base is not None else np.zeros(rank.size)

    def score(self, state: ClusterState, shape: Shape,
              idx: IntArray) -> tuple[FloatArray, IntArray]:
        score, device = self.base.score(state, shape, idx)
        if not shape.datasets:
            return score, device
        held = np.array([len(shape.datasets & self.cached.get(state.names[int(i)], frozenset()))
                         for i in idx], dtype=np.float64)
        return score + self.bonus * held / len(shape.datasets), device


def with_dataset_affinity(queue: Sequence[Workload], scorer: Scorer,
                          wanted: Mapping[str, frozenset[str]],
                          cached: Mapping[str, frozenset[str]]
                          ) -> tuple[list[Workload], Scorer]:
    """The queue with each workload's wanted versions (by workload id), and the scorer that
    prefers nodes holding them; unchanged when no node caches anything a workload wants."""
    held = frozenset().union(*cached.values()) if cached else frozenset()
    if not any(wanted.get(w.id, frozenset()) & held for w in queue):
        return list(queue), scorer
    marked = [dataclasses.replace(w, datasets=wanted[w.id]) if wanted.get(w.id) else w
              for w in queue]
    return marked, DatasetAffinityScorer(scorer, cached)
