"""Hand-built clusters, one rule each."""

from __future__ import annotations

import numpy as np
import pytest

from gpucloud.scheduling.engine import Placer, place
from gpucloud.scheduling.filters import never_fits, why_pending
from gpucloud.scheduling.frag import Compiled, fragmentation, typical
from gpucloud.scheduling.model import MILLI, ClusterSnapshot, Device, Node, Shape, Workload
from gpucloud.scheduling.policies import BestFitScorer, FgdScorer, FragAwareScorer
from gpucloud.scheduling.state import ClusterState


def node(name: str, gpus: int = 8, model: str = "G2", cpu: int = 96_000,
         mem: int = 393_216, healthy: bool = True) -> Node:
    return Node(name, cpu, mem, tuple(Device(j, model) for j in range(gpus)), healthy=healthy)


def frac(i: int, milli: int, cpu: int = 1000, models: frozenset[str] | None = None) -> Workload:
    return Workload(f"f{i}", cpu, 1024, 1, milli, models)


def test_fractions_share_a_device_and_never_exceed_1000_milli() -> None:
    plan = place(ClusterSnapshot((node("a", gpus=1),)),
                 [frac(i, m) for i, m in enumerate((500, 300, 200, 100))], BestFitScorer())
    assert [p.workload_id for p in plan.placements] == ["f0", "f1", "f2"]
    assert all(p.devices == (0,) for p in plan.placements)
    assert sum(p.gpu_milli for p in plan.placements) == MILLI
    assert plan.pending[0].workload_id == "f3"
    assert plan.pending[0].message == "0/1 nodes fit: 1 too few free GPUs"


def test_whole_gpus_take_fully_free_devices_only() -> None:
    state = ClusterState([node("a", gpus=2)])
    placer = Placer(state, BestFitScorer())
    assert placer.place(frac(0, 400)) is not None
    whole = placer.place(Workload("w", 1000, 0, 1, MILLI))
    assert whole is not None and whole.devices == (1,)
    assert placer.place(Workload("w2", 1000, 0, 1, MILLI)) is None


def test_model_constraints_are_respected() -> None:
    cluster = ClusterSnapshot((node("t4", model="T4"), node("g2", model="G2")))
    plan = place(cluster, [Workload("only-t4", 1000, 0, 2, MILLI, frozenset({"T4"})),
                           Workload("a100", 1000, 0, 1, MILLI, frozenset({"A100"}))],
                 BestFitScorer())
    assert [(p.workload_id, p.node) for p in plan.placements] == [("only-t4", "t4")]
    assert plan.pending[0].message == "0/2 nodes fit: 2 wrong GPU model"


def test_rejections_are_aggregated_first_filter_wins() -> None:
    cluster = ClusterSnapshot((
        node("sick", healthy=False), node("small", gpus=1), node("t4", model="T4"),
        node("busy", cpu=500), node("tiny-mem", mem=10),
    ))
    plan = place(cluster, [Workload("w", 1000, 1024, 2, MILLI, frozenset({"G2"}))],
                 BestFitScorer())
    assert plan.pending[0].message == ("0/5 nodes fit: 1 too few free CPUs, 1 too few free GPUs, "
                                       "1 too little free memory, 1 unhealthy, 1 wrong GPU model")
    assert plan.placements == ()


def test_why_pending_counts_fitting_nodes() -> None:
    assert why_pending(0, {}) == "no nodes are registered yet"
    assert why_pending(3, {"too few free GPUs": 2}) == "1/3 nodes fit: 2 too few free GPUs"


def test_cpu_and_memory_are_never_overcommitted() -> None:
    state = ClusterState([node("a", gpus=0, cpu=4000, mem=4096)])
    placer = Placer(state, BestFitScorer())
    placed = [placer.place(Workload(f"c{i}", 1500, 1024)) for i in range(4)]
    assert sum(p is not None for p in placed) == 2
    assert state.cpu_free[0] == 1000 and state.mem_free[0] == 2048


def test_claim_refuses_to_overcommit_and_release_restores() -> None:
    state = ClusterState([node("a", gpus=1)])
    first = state.claim(0, frac(0, 700), (0,))
    with pytest.raises(ValueError):
        state.claim(0, frac(1, 400), (0,))
    state.release(first)
    assert state.gpu_free[0, 0] == MILLI and state.allocated_gpu_milli == 0


def test_fragmentation_counts_free_milli_a_typical_request_cannot_use() -> None:
    state = ClusterState([node("a", gpus=2)])
    state.claim(0, frac(0, 700), (0,))  # device 0 has 300 left
    dist = typical([Shape(1000, 0, 1, 500)])  # every request wants 500 milli
    compiled = Compiled.build(dist, state)
    assert fragmentation(state, compiled, np.array([0]))[0] == pytest.approx(300)


def test_fgd_puts_a_fraction_where_it_fragments_least() -> None:
    # Node a has a device with 500 left; b is empty. Half the requests want 500 milli, half a
    # whole GPU: filling a's half device keeps b whole, splitting b would strand it for them.
    state = ClusterState([node("b", gpus=1), node("a", gpus=1)])
    state.claim(1, frac(0, 500), (0,))
    dist = typical([Shape(1000, 0, 1, 500), Shape(1000, 0, 1, MILLI)])
    for scorer in (FgdScorer(dist), FragAwareScorer(dist)):
        placer = Placer(state, scorer)
        assert placer.choose(frac(1, 500).shape) == (1, 0)


def test_ties_go_to_the_lowest_rank() -> None:
    state = ClusterState([node("a"), node("b"), node("c")])
    placer = Placer(state, BestFitScorer(), rank=np.array([2, 0, 1]))
    got = placer.place(Workload("w", 1000, 0, 1, MILLI))
    assert got is not None and got.node == "b"


def test_priority_orders_the_queue_and_a_big_job_does_not_block_small_ones() -> None:
    cluster = ClusterSnapshot((node("a", gpus=2),))
    queue = [Workload("big", 1000, 0, 4, MILLI), Workload("low", 1000, 0, 1, MILLI),
             Workload("high", 1000, 0, 2, MILLI, priority=5)]
    plan = place(cluster, queue, BestFitScorer())
    assert [p.workload_id for p in plan.placements] == ["high"]
    assert {u.workload_id for u in plan.pending} == {"big", "low"}


def test_workload_validation() -> None:
    with pytest.raises(ValueError):
        Workload("bad", 1000, 0, 2, 500)
    with pytest.raises(ValueError):
        Workload("bad", 1000, 0, 1, 0)


def test_never_fits_names_the_limit_of_each_node() -> None:
    fleet = ClusterSnapshot(
        (Node("n0", 64000, 512000, tuple(Device(i, "H100") for i in range(8))),)
    )

    def gpus(count: int, models: frozenset[str] | None = None, cpu: int = 1000) -> Workload:
        return Workload("w", cpu, 1024, count, 1000 if count else 0, models)

    assert never_fits(fleet, gpus(9)) == "n0 has 8 matching GPUs"
    assert never_fits(fleet, gpus(2, frozenset({"A100-80G"}))) == "n0 has 0 matching GPUs"
    assert never_fits(fleet, gpus(8)) is None
    assert never_fits(fleet, gpus(0, cpu=128000)) == "n0 has 64 CPUs"
    assert never_fits(ClusterSnapshot(()), gpus(9)) is None  # no fleet yet: queue, not refuse
