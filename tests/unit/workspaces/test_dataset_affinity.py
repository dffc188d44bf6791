"""The dataset-affinity scorer plugin: of two otherwise equal nodes, the one whose cache holds
the workload's dataset version wins; without cached data nothing changes."""

from __future__ import annotations

import numpy as np

from gpucloud.scheduling.dataset_affinity import DatasetAffinityScorer, with_dataset_affinity
from gpucloud.scheduling.frag import typical
from gpucloud.scheduling.model import ClusterSnapshot, Device, Node, Workload
from gpucloud.scheduling.policies import BestFitScorer, FragAwareScorer
from gpucloud.scheduling.scheduler import SchedulerConfig, schedule
from gpucloud.scheduling.state import ClusterState


def two_nodes() -> ClusterSnapshot:
    return ClusterSnapshot(tuple(
        Node(name, 32_000, 256_000, tuple(Device(i, "H100") for i in range(8)))
        for name in ("n0", "n1")))


def place(workload: Workload, cached: dict[str, frozenset[str]],
          wanted: dict[str, frozenset[str]]) -> str:
    snapshot = two_nodes()
    scorer = FragAwareScorer(typical([workload.shape]))
    queue, scorer = with_dataset_affinity([workload], scorer, wanted, cached)
    plan = schedule(snapshot, queue, scorer, SchedulerConfig(preemption=False))
    (placement,) = plan.placements
    return placement.node


def test_the_node_holding_the_dataset_wins_when_otherwise_equal() -> None:
    job = Workload("job-1", cpu_milli=4000, memory_mib=16_000, gpu_count=1, gpu_milli=1000)
    # Without a cache the tie goes to the first node in order...
    assert place(job, {}, {"job-1": frozenset({"dsv_a"})}) == "n0"
    # ...with n1 holding the version, n1 wins.
    assert place(job, {"n1": frozenset({"dsv_a"})}, {"job-1": frozenset({"dsv_a"})}) == "n1"
    # A cache of other data is no reason to move.
    assert place(job, {"n1": frozenset({"dsv_b"})}, {"job-1": frozenset({"dsv_a"})}) == "n0"


def test_the_bonus_is_proportional_and_leaves_other_workloads_alone() -> None:
    state = ClusterState.from_snapshot(two_nodes())
    scorer = DatasetAffinityScorer(BestFitScorer(), {"n0": frozenset({"a"}),
                                                     "n1": frozenset({"a", "b"})})
    wants = Workload("w", cpu_milli=1000, datasets=frozenset({"a", "b"})).shape
    plain = Workload("p", cpu_milli=1000).shape
    idx = np.arange(2)
    base, _ = BestFitScorer().score(state, plain, idx)
    with_data, _ = scorer.score(state, wants, idx)
    assert list(with_data - base) == [2.5, 5.0]
    assert list(scorer.score(state, plain, idx)[0]) == list(base)
    queue, same = with_dataset_affinity([Workload("p", cpu_milli=1000)], BestFitScorer(), {},
                                        {"n0": frozenset({"a"})})
    assert isinstance(same, BestFitScorer) and queue[0].datasets == frozenset()
