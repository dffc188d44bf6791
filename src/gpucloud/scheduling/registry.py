"""Policies by name: each a factory from the request distribution (and, for simulations, the
arrival list and a seeded generator) to a scorer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpucloud.scheduling.fgd_sim import ScorerFactory
from gpucloud.scheduling.frag import Distribution
from gpucloud.scheduling.model import Workload
from gpucloud.scheduling.policies import (
    BestFitScorer,
    ClusteringScorer,
    DotProductScorer,
    FgdScorer,
    FragAwareScorer,
    PackingScorer,
    RandomScorer,
    Scorer,
)


def _random(d: Distribution, w: Sequence[Workload], rng: np.random.Generator) -> Scorer:
    return RandomScorer(rng)


def _bestfit(d: Distribution, w: Sequence[Workload], rng: np.random.Generator) -> Scorer:
    return BestFitScorer()


def _packing(d: Distribution, w: Sequence[Workload], rng: np.random.Generator) -> Scorer:
    return PackingScorer()


def _dotprod(d: Distribution, w: Sequence[Workload], rng: np.random.Generator) -> Scorer:
    return DotProductScorer()


def _clustering(d: Distribution, w: Sequence[Workload], rng: np.random.Generator) -> Scorer:
    return ClusteringScorer()


def _fgd(d: Distribution, w: Sequence[Workload], rng: np.random.Generator) -> Scorer:
    return FgdScorer(d)


POLICIES: dict[str, ScorerFactory] = {
    "random": _random,
    "dotprod": _dotprod,
    "clustering": _clustering,
    "packing": _packing,
    "bestfit": _bestfit,
    "fgd": _fgd,
}


def _fragaware(d: Distribution, w: Sequence[Workload], rng: np.random.Generator) -> Scorer:
    return FragAwareScorer(d)


POLICIES["fragaware"] = _fragaware
