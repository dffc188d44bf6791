"""place_gang skips domains whose totals cannot hold the gang; it must never skip one that
could. Checked against trying every domain, in the same order, without the bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gpucloud.scheduling.engine import Placer
from gpucloud.scheduling.filters import DEFAULT_FILTERS
from gpucloud.scheduling.frag import typical
from gpucloud.scheduling.gang import Domains, _claim_in, allowed_levels, place_gang
from gpucloud.scheduling.model import MILLI, Device, Node, Placement, Topology, Workload
from gpucloud.scheduling.policies import BestFitScorer, FragAwareScorer, Scorer
from gpucloud.scheduling.state import ClusterState


def every_domain(state: ClusterState, scorer: Scorer, members: list[Workload],
                 domains: Domains, max_level: str) -> tuple[list[Placement], str] | None:
    """The search without bounds: each level's unseen domains, least free GPU milli first."""
    ordered = sorted(members, key=lambda w: (-w.total_gpu_milli, -w.cpu_milli, w.id))
    seen: set[frozenset[int]] = set()
    for level in allowed_levels(max_level):
        tries = []
        for key, idx in domains.by_level[level]:
            span = frozenset(idx.tolist())
            if span in seen:
                continue
            seen.add(span)
            free = int((state.gpu_free[idx] * state.gpu_ok[idx])[state.healthy[idx]].sum())
            tries.append((free, key, idx))
        for _, _, idx in sorted(tries, key=lambda t: (t[0], t[1])):
            placed = _claim_in(state, scorer, ordered, idx, DEFAULT_FILTERS, None)
            if placed is not None:
                return placed, level
    return None


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Node], list[Workload], list[Workload], str]:
    nodes = []
    for i in range(draw(st.integers(2, 10))):
        gpus = draw(st.sampled_from((2, 4, 8)))
        nodes.append(Node(f"n{i}", draw(st.integers(4, 64)) * 1000,
                          draw(st.integers(8, 128)) * 1024,
                          tuple(Device(j, "G2", healthy=draw(st.integers(0, 9)) > 0)
                                for j in range(gpus)),
                          healthy=draw(st.integers(0, 9)) > 0,
                          topology=Topology(f"i{i // 2}", f"l{i // 4}", "r0")))
    busy = [Workload(f"b{k}", draw(st.integers(0, 16)) * 1000, draw(st.integers(0, 32)) * 1024,
                     1, draw(st.sampled_from((300, 500, MILLI))))
            for k in range(draw(st.integers(0, 12)))]
    size = draw(st.integers(2, 6))
    equal = draw(st.booleans())
    members = []
    for k in range(size):
        gpus = 2 if equal else draw(st.sampled_from((1, 2, 4)))
        cpu = 4000 if equal else draw(st.integers(0, 16)) * 1000
        frac = not equal and gpus == 1 and draw(st.booleans())
        members.append(Workload(f"g{k}", cpu, 2048, 1 if frac else gpus,
                                500 if frac else MILLI, gang_id="g", gang_size=size))
    return nodes, busy, members, draw(st.sampled_from(("node", "nvlink_island", "leaf_switch",
                                                       "cluster")))


@settings(max_examples=80, deadline=None)
@given(cases())
def test_bounds_never_skip_a_domain_that_fits(case: tuple[list[Node], list[Workload],
                                                          list[Workload], str]) -> None:
    nodes, busy, members, level = case
    domains = Domains.build(nodes)
    for scorer in (BestFitScorer(), FragAwareScorer(typical(w.shape for w in members))):
        results = []
        for search in ("bounded", "every"):
            state = ClusterState(nodes)
            placer = Placer(state, scorer, matrix_after=0)
            for w in busy:
                placer.place(w)
            if search == "bounded":
                got = place_gang(state, scorer, members, domains, level, placer=placer)
            else:
                got = every_domain(state, scorer, members, domains, level)
            results.append(None if got is None else
                           (got[1], sorted((p.workload_id, p.node, p.devices) for p in got[0])))
        assert results[0] == results[1]
        if results[0] is not None:
            assert len(results[0][1]) == len(members)
