"""The FGD paper's evaluation protocol (arrivals only), on our placement core.

As in their simulator (``-tune 1.3 --shuffle-pod=true``): the pod list, sorted by name, is
shuffled with the seed, then tuned to ``tune`` x the cluster's GPU capacity (random pods removed
while over; random copies of pods appended while under); nodes get a seeded fixed order that
breaks score ties; pods arrive in order and never leave. Each time the arrived GPU request passes
another 1% of capacity, the allocated share is recorded. The typical-request distribution is
taken from the original list, CPU-only pods included.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from gpucloud.scheduling.engine import Placer
from gpucloud.scheduling.frag import Distribution, typical
from gpucloud.scheduling.model import Node, Workload
from gpucloud.scheduling.policies import Scorer
from gpucloud.scheduling.state import ClusterState

ScorerFactory = Callable[[Distribution, Sequence[Workload], np.random.Generator], Scorer]


@dataclass(frozen=True)
class RunResult:
    seed: int
    alloc_pct_at_100: float
    curve: tuple[float, ...]  # allocated % of GPU milli at 0%, 1%, ... of arrived request
    placed: int
    failed: int


def tuned_arrivals(pods: Sequence[Workload], capacity_milli: int, tune: float,
                   rng: random.Random) -> list[Workload]:
    ordered = sorted(pods, key=lambda w: w.id)
    arrivals = list(ordered)
    rng.shuffle(arrivals)
    target = tune * capacity_milli
    total = sum(w.total_gpu_milli for w in arrivals)
    if total > target:
        while total > target and arrivals:
            total -= arrivals.pop(rng.randrange(len(arrivals))).total_gpu_milli
    elif ordered:
        copy = 0
        while True:
            drawn = ordered[rng.randrange(len(ordered))]
            if total + drawn.total_gpu_milli > target:
                break
            total += drawn.total_gpu_milli
            arrivals.append(Workload(f"{drawn.id}-tuned-{copy}", drawn.cpu_milli,
                                     drawn.memory_mib, drawn.gpu_count, drawn.gpu_milli,
                                     drawn.gpu_models))
            copy += 1
    return arrivals


def run(nodes: Sequence[Node], pods: Sequence[Workload], make_scorer: ScorerFactory,
        seed: int, tune: float = 1.3, coverage: float = 0.95) -> RunResult:
    if not any(w.total_gpu_milli for w in pods):
        raise ValueError("the pod list requests no GPUs")
    rng = random.Random(seed)
    ordered_nodes = sorted(nodes, key=lambda n: n.name)
    state = ClusterState(ordered_nodes)
    capacity = state.total_gpu_milli
    if capacity == 0:
        raise ValueError("the node list has no GPUs")
    arrivals = tuned_arrivals(pods, capacity, tune, rng)
    rank = np.array(rng.sample(range(len(ordered_nodes)), len(ordered_nodes)), dtype=np.int64)
    np_rng = np.random.default_rng(rng.randrange(2**32))
    scorer = make_scorer(typical((w.shape for w in pods), coverage), arrivals, np_rng)
    placer = Placer(state, scorer, rank=rank, rng=np_rng)
    curve = [0.0]
    arrived = placed = failed = 0
    for workload in arrivals:
        arrived += workload.total_gpu_milli
        if placer.place(workload) is None:
            failed += 1
        else:
            placed += 1
        while len(curve) <= 100 and arrived >= len(curve) * capacity / 100:
            curve.append(100.0 * state.allocated_gpu_milli / capacity)
    at_100 = curve[100] if len(curve) > 100 else 100.0 * state.allocated_gpu_milli / capacity
    return RunResult(seed, at_100, tuple(curve), placed, failed)


def parse_seeds(text: str) -> list[int]:
    """Seeds as written on a command line: ``42-51`` (inclusive), ``1,2,5`` or ``7``.

    Raises ``ValueError`` with a message that says what was wrong.
    """
    body = text.replace(" ", "")
    if match := re.fullmatch(r"(\d+)-(\d+)", body):
        first, last = int(match[1]), int(match[2])
        if last < first:
            raise ValueError(f"seed range {text!r} is empty (write low-high)")
        return list(range(first, last + 1))
    if not re.fullmatch(r"\d+(,\d+)*", body):
        raise ValueError(f"{text!r} is not a seed range like 42-51 or a list like 1,2,5")
    seeds = [int(part) for part in body.split(",")]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seed list {text!r} repeats a seed")
    return seeds


def run_seeds(nodes: Sequence[Node], pods: Sequence[Workload], make_scorer: ScorerFactory,
              seeds: Sequence[int], jobs: int = 1, tune: float = 1.3) -> list[RunResult]:
    """``run`` once per seed (in ``jobs`` processes when > 1), results in seed order."""
    if jobs <= 1 or len(seeds) <= 1:
        return [run(nodes, pods, make_scorer, seed, tune) for seed in seeds]
    with ProcessPoolExecutor(max_workers=min(jobs, len(seeds))) as pool:
        return list(pool.map(run, repeat(nodes), repeat(pods), repeat(make_scorer), seeds,
                             repeat(tune)))


def summarise(results: Sequence[RunResult]) -> dict[str, Any]:
    """The JSON summary of runs of one policy on one list: the mean allocation at 100%
    arrival, the per-seed values and the mean curve (allocated % at 0%, 1%, ... arrived)."""
    return {
        "alloc_pct_at_100": statistics.fmean(r.alloc_pct_at_100 for r in results),
        "per_seed": {str(r.seed): r.alloc_pct_at_100 for r in results},
        "curve": [statistics.fmean(c) for c in zip(*(r.curve for r in results), strict=False)],
    }
