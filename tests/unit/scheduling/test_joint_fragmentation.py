"""fragaware's joint CPU/GPU term: GPU the free CPU cannot feed at the usual proportions."""

from __future__ import annotations

import numpy as np
import pytest

from gpucloud.scheduling.engine import Placer
from gpucloud.scheduling.frag import Compiled, cpu_per_gpu_milli, stranded_milli, typical
from gpucloud.scheduling.model import MILLI, Device, Node, Shape, Workload
from gpucloud.scheduling.policies import FgdScorer, FragAwareScorer
from gpucloud.scheduling.state import ClusterState


def node(name: str, cpu: int, gpus: int = 3, model: str = "G2") -> Node:
    return Node(name, cpu, 393_216, tuple(Device(j, model) for j in range(gpus)))


def test_stranded_milli() -> None:
    gpu = np.array([2000.0, 2000.0, 0.0, 3000.0])
    cpu = np.array([3000.0, 8000.0, 0.0, 0.0])
    ratio = np.array([2.0, 2.0, 2.0, 0.0])  # 2 CPU milli per GPU milli; 0: no GPU demand
    assert stranded_milli(gpu, cpu, ratio).tolist() == [500.0, 0.0, 0.0, 0.0]


def test_cpu_per_gpu_milli_is_per_model() -> None:
    state = ClusterState([node("t", 8000, model="T4"), node("v", 8000, model="V100")])
    dist = typical([Shape(2000, 0, 1, MILLI), Shape(2000, 0, 1, MILLI),
                    Shape(6000, 0, 1, 500, frozenset({"V100"})), Shape(4000, 0, 0, 0)],
                   coverage=1.0)
    ratio = cpu_per_gpu_milli(Compiled.build(dist, state))
    t4, v100 = state.models.index("T4"), state.models.index("V100")
    # T4: only the unconstrained 1-GPU/2-CPU requests; V100 also gets 6 CPUs per half GPU.
    # The CPU-only shape takes no GPU and does not count.
    assert ratio[t4] == pytest.approx(2.0)
    assert ratio[v100] == pytest.approx((2 * 2000 + 6000) / (2 * 1000 + 500))
    assert ratio[state.absent] == pytest.approx((2 * 2000 + 6000) / (2 * 1000 + 500))


def test_fragaware_keeps_cpu_for_the_gpus_left_where_fgd_does_not_see_it() -> None:
    # Typical requests: 1 GPU with 2 CPUs. A CPU-hungry 1-GPU pod (6 CPUs) can go to
    # a (9 CPUs) or b (20 CPUs). On either, one typical request still fits afterwards, so
    # FGD sees no growth and takes the first node in the tie order, a: its 2 GPUs left
    # then have 3 CPUs, enough for one of them. fragaware takes b.
    dist = typical([Shape(2000, 0, 1, MILLI)])
    pod = Workload("p", 6000, 1024, 1, MILLI)
    for scorer, expected in ((FgdScorer(dist), 0), (FragAwareScorer(dist), 1)):
        state = ClusterState([node("a", 9000), node("b", 20_000)])
        assert Placer(state, scorer).choose(pod.shape) == (expected, -1)
    without = ClusterState([node("a", 9000), node("b", 20_000)])
    assert Placer(without, FragAwareScorer(dist, strand=0.0)).choose(pod.shape) == (0, -1)


def test_the_term_applies_to_fractions_on_every_device_that_fits() -> None:
    dist = typical([Shape(2000, 0, 1, MILLI)])
    state = ClusterState([node("a", 9000), node("b", 20_000)])
    scorer = FragAwareScorer(dist)
    growth, device = scorer.growth(state, Shape(6000, 0, 1, 500), np.arange(2))
    base, _ = FgdScorer(dist).growth(state, Shape(6000, 0, 1, 500), np.arange(2))
    assert device is None and growth.shape == (2, 3)
    # a: 2500 GPU milli left with 3000 CPU milli at 2 per milli: 1000 stranded; b: none.
    assert (growth - base)[0].tolist() == [1000.0] * 3
    assert (growth - base)[1].tolist() == [0.0] * 3
