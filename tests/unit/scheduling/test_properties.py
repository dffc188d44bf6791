"""Invariants over random clusters and queues, for every policy."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucloud.scheduling.engine import Placer
from gpucloud.scheduling.frag import typical
from gpucloud.scheduling.model import MILLI, Device, Node, Workload
from gpucloud.scheduling.registry import POLICIES
from gpucloud.scheduling.state import ClusterState

MODELS = ("G2", "T4", "P100")


@st.composite
def nodes(draw: st.DrawFn) -> list[Node]:
    count = draw(st.integers(1, 6))
    out = []
    for i in range(count):
        gpus = draw(st.sampled_from((0, 1, 2, 4, 8)))
        model = draw(st.sampled_from(MODELS))
        out.append(Node(f"n{i}", draw(st.integers(1, 64)) * 1000, draw(st.integers(1, 64)) * 1024,
                        tuple(Device(j, model) for j in range(gpus)),
                        healthy=draw(st.booleans()) or i == 0))
    return out


@st.composite
def workloads(draw: st.DrawFn) -> list[Workload]:
    out = []
    for i in range(draw(st.integers(1, 40))):
        count = draw(st.sampled_from((0, 1, 1, 1, 2, 4, 8)))
        milli = draw(st.sampled_from((100, 250, 500, 700, MILLI))) if count == 1 else MILLI
        models = draw(st.none() | st.frozensets(st.sampled_from(MODELS), min_size=1))
        out.append(Workload(f"w{i}", draw(st.integers(0, 16)) * 1000,
                            draw(st.integers(0, 16)) * 1024, count, milli if count else 0,
                            models if count else None))
    return out


@settings(max_examples=60, deadline=None)
@given(nodes(), workloads(), st.sampled_from(sorted(POLICIES)))
def test_no_overcommit_and_constraints_hold(cluster: list[Node], queue: list[Workload],
                                            policy: str) -> None:
    state = ClusterState(cluster)
    scorer = POLICIES[policy](typical(w.shape for w in queue), queue, np.random.default_rng(1))
    placer = Placer(state, scorer, rng=np.random.default_rng(2))
    by_node = {n.name: n for n in cluster}
    used_cpu: dict[str, int] = defaultdict(int)
    used_mem: dict[str, int] = defaultdict(int)
    used_gpu: dict[tuple[str, int], int] = defaultdict(int)
    for w in queue:
        p = placer.place(w)
        if p is None:
            assert "nodes fit" in placer.explain(w)
            continue
        n = by_node[p.node]
        assert n.healthy
        assert len(p.devices) == w.gpu_count and len(set(p.devices)) == w.gpu_count
        for j in p.devices:
            assert w.gpu_models is None or n.devices[j].model in w.gpu_models
            used_gpu[(p.node, j)] += w.gpu_milli
        if w.gpu_count > 1 or w.gpu_milli == MILLI:
            assert all(used_gpu[(p.node, j)] == MILLI for j in p.devices)
        used_cpu[p.node] += w.cpu_milli
        used_mem[p.node] += w.memory_mib
    for name, n in by_node.items():
        assert used_cpu[name] <= n.cpu_milli and used_mem[name] <= n.memory_mib
    assert all(v <= MILLI for v in used_gpu.values())
    assert (state.gpu_free >= 0).all() and (state.cpu_free >= 0).all()
    assert state.allocated_gpu_milli == sum(used_gpu.values())
