"""Scorers: rank the feasible nodes for a shape, vectorised over nodes.

A scorer returns, for the nodes ``idx`` that passed the filters, a score (higher is better)
and the device a fractional request should take there (-1 when the claim picks devices
itself). The baselines mirror the FGD paper's kube-scheduler plugins, integer scores in 0..100
included, so that the paper's comparison can be rerun side by side; ``fragaware`` is ours.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gpucloud.scheduling.frag import Compiled, Distribution, FloatArray
from gpucloud.scheduling.frag_column import Plan, column, fraction_device
from gpucloud.scheduling.frag_tables import UNFIT, FragTables, Keys
from gpucloud.scheduling.model import MILLI, Shape, kind_of
from gpucloud.scheduling.state import ClusterState, IntArray

MAX_CPU, MAX_GPU = 128_000, 8 * MILLI  # the FGD simulator's normalisation constants


class Scorer(Protocol):
    name: str
    random: bool  # pick uniformly among feasible nodes instead of by score

    def score(self, state: ClusterState, shape: Shape,
              idx: IntArray) -> tuple[FloatArray, IntArray]: ...


def _no_device(n: int) -> IntArray:
    return np.full(n, -1, dtype=np.int64)


def _best_fit_device(state: ClusterState, shape: Shape, idx: IntArray) -> IntArray:
    """For fractions: the usable device with the least free milli that still fits."""
    if not shape.is_fractional:
        return _no_device(idx.size)
    gpu = state.gpu_free[idx]
    fits = state.usable(shape, idx) & (gpu >= shape.gpu_milli)
    return np.asarray(np.argmin(np.where(fits, gpu, MILLI + 1), axis=1), dtype=np.int64)


@dataclass
class RandomScorer:
    rng: np.random.Generator
    name: str = "random"
    random: bool = True

    def score(self, state: ClusterState, shape: Shape,
              idx: IntArray) -> tuple[FloatArray, IntArray]:
        if not shape.is_fractional:
            return np.zeros(idx.size), _no_device(idx.size)
        gpu = state.gpu_free[idx]
        fits = state.usable(shape, idx) & (gpu >= shape.gpu_milli)
        # A uniformly random fitting device: the largest random key among fitting ones.
        keys = np.where(fits, self.rng.random(fits.shape), -1.0)
        return np.zeros(idx.size), np.asarray(np.argmax(keys, axis=1), dtype=np.int64)


@dataclass
class BestFitScorer:
    """Least CPU and GPU left after placing, equally weighted (FGD paper's BestFit)."""

    name: str = "bestfit"
    random: bool = False

    def score(self, state: ClusterState, shape: Shape,
              idx: IntArray) -> tuple[FloatArray, IntArray]:
        left = ((state.cpu_free[idx] - shape.cpu_milli) / MAX_CPU * 0.5
                + (state.gpu_free[idx].sum(axis=1) - shape.total_gpu_milli) / MAX_GPU * 0.5)
        return np.floor((1.0 - left) * 100), _best_fit_device(state, shape, idx)


@dataclass
class PackingScorer:
    """Shared GPUs first, then free GPUs on used nodes, then idle nodes (GPU packing)."""

    name: str = "packing"
    random: bool = False

    def score(self, state: ClusterState, shape: Shape,
              idx: IntArray) -> tuple[FloatArray, IntArray]:
        n = idx.size
        if shape.gpu_count == 0:
            return np.zeros(n), _no_device(n)
        gpu = state.gpu_free[idx]
        exists = state.gpu_ok[idx]
        fully_free = ((gpu == MILLI) & exists).sum(axis=1)
        idle_node = fully_free == state.gpu_count[idx]
        device = _best_fit_device(state, shape, idx)
        if shape.is_fractional:
            left = gpu[np.arange(n), device]
            uses_free = left == MILLI
            shared_score = np.maximum(100 - (left * 100 // MILLI) // 10, 50)
            score = np.where(uses_free, np.maximum(50 - 1, 33), shared_score)
        else:
            score = np.full(n, np.maximum(50 - shape.gpu_count, 33))
        score = np.where(idle_node, np.maximum(33 - fully_free, fully_free), score)
        return score.astype(np.float64), device


@dataclass
class DotProductScorer:
    """Tetris-style alignment of request and free vectors (merged GPU dimension)."""

    name: str = "dotprod"
    random: bool = False

    def score(self, state: ClusterState, shape: Shape,
              idx: IntArray) -> tuple[FloatArray, IntArray]:
        dot = (state.cpu_free[idx] / MAX_CPU * (shape.cpu_milli / MAX_CPU)
               + state.gpu_free[idx].sum(axis=1) / MAX_GPU * (shape.total_gpu_milli / MAX_GPU))
        return np.floor((1.0 - dot / 2) * 100), _best_fit_device(state, shape, idx)


@dataclass
class ClusteringScorer:
    """Keep requests of one kind (shared, 1-GPU, 8-GPU...) together (GPU clustering)."""

    name: str = "clustering"
    random: bool = False

    def score(self, state: ClusterState, shape: Shape,
              idx: IntArray) -> tuple[FloatArray, IntArray]:
        n = idx.size
        if shape.gpu_count == 0:
            return np.zeros(n), _no_device(n)
        kinds = state.kinds[idx]
        mine = kinds[:, kind_of(shape)]
        distinct = (kinds[:, 1:] > 0).sum(axis=1)  # GPU kinds only
        base = np.where(mine > 0, np.where(distinct == 1, 75, 50),
                        np.where(distinct == 0, 25, 0))
        fill = 25 * (MAX_GPU - state.gpu_free[idx].sum(axis=1)) // MAX_GPU
        return (base + fill).astype(np.float64), _best_fit_device(state, shape, idx)


class _FragBase:
    """Shared machinery: growth of expected fragmentation for every candidate placement,
    scored for many nodes and shapes at once (``score_block``; ``column``: one node, every
    shape); ``score`` is one shape.

    ``centre`` (milli of growth per milli requested) and ``strand`` (weight of the growth of
    CPU-stranded GPU) are 0 for FGD itself."""

    centre = 0.0
    strand = 0.0

    def __init__(self, dist: Distribution) -> None:
        self.dist = dist
        # Keyed by a weak reference, not id(): a new state may reuse a collected one's id.
        self._compiled: tuple[weakref.ref[ClusterState], Compiled] | None = None
        self._tables: tuple[weakref.ref[ClusterState], FragTables] | None = None

    def compiled(self, state: ClusterState) -> Compiled:
        if self._compiled is None or self._compiled[0]() is not state:
            self._compiled = (weakref.ref(state), Compiled.build(self.dist, state))
        return self._compiled[1]

    def tables(self, state: ClusterState) -> FragTables:
        if self._tables is None or self._tables[0]() is not state:
            self._tables = (weakref.ref(state), FragTables(self.compiled(state), state))
        return self._tables[1]

    def growth(self, state: ClusterState, shape: Shape,
               idx: IntArray) -> tuple[FloatArray, IntArray | None]:
        """Fragmentation growth per node (for fractions: per node and device, (n, D))."""
        return self.tables(state).growth(state, shape, idx)

    def score_block(self, state: ClusterState, idx: IntArray,
                    keys: Keys) -> tuple[FloatArray, IntArray]:
        return self.tables(state).score_block(state, idx, keys, self.centre, self.strand)

    def plan(self, state: ClusterState, keys: Keys) -> Plan:
        return Plan.build(self.tables(state), keys, self.centre, self.strand)

    def column(self, state: ClusterState, node: int, plan: Plan) -> IntArray:
        return column(self.tables(state), state, node, plan)

    def fraction_device(self, state: ClusterState, node: int, shape: Shape) -> int:
        return fraction_device(self.tables(state), state, node, shape, self.centre,
                               self.strand)

    def score(self, state: ClusterState, shape: Shape,
              idx: IntArray) -> tuple[FloatArray, IntArray]:
        score, device = self.score_block(state, idx, self.tables(state).keys(state, shape))
        return score[:, 0], device[:, 0]


class FgdScorer(_FragBase):
    """FGD: int(sigmoid(-growth / 1000) * 100); fractions take the first best device."""

    name = "fgd"
    random = False


class FragAwareScorer(_FragBase):
    """Ours: FGD's fragmentation growth plus the growth of CPU-stranded GPU, with the sigmoid
    centred by request size and a nudge towards a fixed node order.

    Joint CPU/GPU fragmentation: FGD counts a node's free GPU as lost to a typical request
    only once the node's free CPU is below that request's (a step). We add ``strand`` times
    the growth of ``max(0, free GPU milli - free CPU milli / r)``, r being the CPU per GPU
    milli of the typical GPU requests allowed on the node's model: GPU that the CPU left
    could not feed at the workload's usual proportions. It steers CPU-hungry requests away
    from nodes whose CPU is already short for their GPUs, before the step is reached.

    FGD scores ``sigmoid(-growth / 1000)`` in integer points. We score
    ``sigmoid(-(growth + centre * request) / 1000)``: for fractions the score keeps FGD's
    resolution, while for whole-GPU requests it saturates towards 0, so their ties fall to the
    fixed node order (first fit), which keeps load consolidated and whole nodes free. A further
    ``consolidate`` points across the node order let near-equal placements pile onto the same
    nodes. Fractions take the first device of best score, as FGD does.
    """

    name = "fragaware"
    random = False

    def __init__(self, dist: Distribution, consolidate: float = 3.0,
                 centre: float = 2.0, strand: float = 1.0) -> None:
        super().__init__(dist)
        self.consolidate, self.centre, self.strand = consolidate, centre, strand

    def node_bias(self, rank: IntArray) -> FloatArray:
        """Score points taken off each node: 0 for the first in the tie order, up to
        ``consolidate`` for the last. The placer adds it to every score."""
        return np.asarray(-self.consolidate * rank / max(rank.size, 1), dtype=np.float64)

    def growth(self, state: ClusterState, shape: Shape,
               idx: IntArray) -> tuple[FloatArray, IntArray | None]:
        growth, device = super().growth(state, shape, idx)
        if not self.strand:
            return growth, device
        extra = self.strand * self.tables(state).stranding_growth(state, shape, idx)
        if device is None:  # fractions: (n, D), the node's term on every device that fits
            return np.where(growth >= UNFIT, growth, growth + extra[:, None]), None
        return growth + extra, device


Factory = Callable[[Distribution, np.random.Generator], Scorer]
