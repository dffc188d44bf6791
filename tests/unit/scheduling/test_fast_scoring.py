"""The fast scoring paths agree with the direct computations they replace.

Lookup tables (``frag_tables``) against ``frag``'s (nodes x devices x shapes) formulas, the
one-state column (``frag_column``) against the block path, the threshold ``points`` against
the sigmoid formula, the score matrix against the plain per-shape caches, and the summaries
behind the fused filters against the filter classes. Clusters mix models within nodes, have
unhealthy devices and nodes, and are part filled before the checks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucloud.scheduling.engine import Placer
from gpucloud.scheduling.filters import DEFAULT_FILTERS, Filter, feasible, rejections
from gpucloud.scheduling.frag import (
    typical,
    usable_after_fraction,
    usable_after_whole,
    usable_milli,
)
from gpucloud.scheduling.frag_column import Plan, column, fraction_device
from gpucloud.scheduling.frag_tables import (
    _BOUNDS,
    _ROUNDED_BOUNDS,
    UNFIT,
    Keys,
    int_points,
    points,
)
from gpucloud.scheduling.model import MILLI, Device, Node, Shape, Workload
from gpucloud.scheduling.policies import FgdScorer, FragAwareScorer
from gpucloud.scheduling.state import ClusterState

MODELS = ("G2", "T4", "P100")
MILLIS = (100, 230, 470, 500, 810, MILLI)


@st.composite
def clusters(draw: st.DrawFn, mixed: bool = True) -> list[Node]:
    out = []
    for i in range(draw(st.integers(1, 8))):
        gpus = draw(st.sampled_from((0, 1, 2, 4, 8, 8)))
        model = draw(st.sampled_from(MODELS))
        several = mixed and draw(st.integers(0, 4)) == 0
        devices = tuple(Device(j, draw(st.sampled_from(MODELS)) if several else model,
                               healthy=draw(st.integers(0, 9)) > 0) for j in range(gpus))
        out.append(Node(f"n{i}", draw(st.integers(2, 64)) * 1000,
                        draw(st.integers(4, 64)) * 1024, devices,
                        healthy=draw(st.integers(0, 7)) > 0 or i == 0))
    return out


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    count = draw(st.sampled_from((0, 1, 1, 1, 2, 4, 8)))
    milli = draw(st.sampled_from(MILLIS)) if count == 1 else (MILLI if count else 0)
    models = draw(st.none() | st.frozensets(st.sampled_from(MODELS), min_size=1)) \
        if count else None
    return Shape(draw(st.integers(0, 24)) * 1000, draw(st.integers(0, 8)) * 1024, count,
                 milli, models)


def fill(state: ClusterState, work: list[Shape]) -> None:
    """Claim each shape on the first node and devices that take it."""
    for k, s in enumerate(work):
        w = Workload(f"f{k}", s.cpu_milli, s.memory_mib, s.gpu_count, s.gpu_milli, s.gpu_models)
        fit = np.flatnonzero(feasible(state, s, np.arange(len(state))))
        if fit.size:
            node = int(fit[-1])
            state.claim(node, w, state.choose_devices(node, s))


@settings(max_examples=60, deadline=None)
@given(clusters(), st.lists(shapes(), min_size=1, max_size=20),
       st.lists(shapes(), max_size=30), st.lists(shapes(), min_size=1, max_size=8))
def test_table_growth_is_frag_growth(nodes: list[Node], dist_shapes: list[Shape],
                                     work: list[Shape], asked: list[Shape]) -> None:
    state = ClusterState(nodes)
    fill(state, work)
    scorer = FgdScorer(typical(dist_shapes))
    dist = scorer.compiled(state)
    idx = np.arange(len(state))
    before = usable_milli(state, dist, idx)
    for shape in asked:
        growth, _ = scorer.growth(state, shape, idx)
        if shape.is_fractional:
            after, fits = usable_after_fraction(state, dist, idx, shape)
            want = np.where(fits, before[:, None] - after - shape.gpu_milli, UNFIT)
            assert ((growth >= UNFIT) == (want >= UNFIT)).all()
            assert np.allclose(growth[fits], want[fits], atol=1e-6)
        else:
            ok = feasible(state, shape, idx)  # the growth of a node that cannot take it is moot
            want = before - usable_after_whole(state, dist, idx, shape) - shape.total_gpu_milli
            assert np.allclose(growth[ok], want[ok], atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(clusters(), st.lists(shapes(), min_size=1, max_size=20),
       st.lists(shapes(), max_size=30), st.lists(shapes(), min_size=1, max_size=12))
def test_one_state_column_is_the_block_score(nodes: list[Node], dist_shapes: list[Shape],
                                             work: list[Shape], asked: list[Shape]) -> None:
    state = ClusterState(nodes)
    fill(state, work)
    asked = [Shape(s.cpu_milli, 0, s.gpu_count, s.gpu_milli, s.gpu_models) for s in asked]
    for scorer in (FgdScorer(typical(dist_shapes)), FragAwareScorer(typical(dist_shapes))):
        tables = scorer.tables(state)
        keys = Keys.build(asked, state)
        plan = Plan.build(tables, keys, scorer.centre, scorer.strand)
        score, device = scorer.score_block(state, np.arange(len(state)), keys)
        for node in range(len(state)):
            assert column(tables, state, node, plan).tolist() == score[node].tolist()
            for k, shape in enumerate(asked):
                if shape.is_fractional and score[node, k] >= 0:
                    assert fraction_device(tables, state, node, shape, scorer.centre,
                                           scorer.strand) == device[node, k]


def test_points_are_the_sigmoid_formula() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, s, 200_000) for s in (10, 1000, 8000)]
                       + [np.round(rng.normal(0, 3000, 100_000))])
    with np.errstate(over="ignore"):
        want = np.floor(100.0 / (1.0 + np.exp(x / 1000.0)))
    assert (points(x) == want).all()
    assert points(np.array([0.0, UNFIT]))[1] == 0.0


@settings(max_examples=40, deadline=None)
@given(clusters(), st.lists(shapes(), min_size=1, max_size=20),
       st.lists(shapes(), min_size=20, max_size=120), st.integers(0, 3))
def test_the_score_matrix_decides_as_the_caches(nodes: list[Node], dist_shapes: list[Shape],
                                                queue: list[Shape], seed: int) -> None:
    rank = np.random.default_rng(seed).permutation(len(nodes))
    for make in (FgdScorer, FragAwareScorer):
        got = []
        for after in (None, 0):
            state = ClusterState(nodes)
            placer = Placer(state, make(typical(dist_shapes)), rank=rank, matrix_after=after)
            placed = []
            for k, s in enumerate(queue):
                p = placer.place(Workload(f"w{k}", s.cpu_milli, s.memory_mib, s.gpu_count,
                                          s.gpu_milli, s.gpu_models))
                placed.append(None if p is None else (p.node, p.devices))
            assert after is None or placer.matrix is not None
            got.append(placed)
        assert got[0] == got[1]


@settings(max_examples=60, deadline=None)
@given(clusters(mixed=False), st.lists(shapes(), max_size=30),
       st.lists(shapes(), min_size=1, max_size=8))
def test_summaries_filter_as_the_filter_classes(nodes: list[Node], work: list[Shape],
                                                asked: list[Shape]) -> None:
    state = ClusterState(nodes)
    fill(state, work)
    idx = np.arange(len(state))
    one_by_one: list[Filter] = list(DEFAULT_FILTERS)  # not the default tuple: the slow path
    for shape in asked:
        assert (feasible(state, shape, idx) == feasible(state, shape, idx, one_by_one)).all()
        assert rejections(state, shape) == rejections(state, shape, one_by_one)


@pytest.mark.parametrize("make", [FgdScorer, FragAwareScorer])
def test_a_fraction_takes_the_first_device_of_best_score(make: type[FgdScorer]) -> None:
    # Devices 1 and 3 have the same room; the fraction must take device 1.
    node = Node("a", 64_000, 262_144, tuple(Device(j, "G2") for j in range(4)))
    state = ClusterState([node])
    for j, milli in ((1, 500), (3, 500), (0, 200)):
        state.claim(0, Workload(f"x{j}", 1000, 0, 1, milli), (j,))
    shape = Shape(1000, 0, 1, 500)
    scorer = make(typical([shape]))
    assert fraction_device(scorer.tables(state), state, 0, shape, scorer.centre,
                           scorer.strand) == 1
    assert int(scorer.score(state, shape, np.array([0]))[1][0]) == 1


def test_a_growth_on_a_score_bound_scores_the_same_both_ways() -> None:
    """Found by the property above: a growth of exactly 0 summed in two orders came out as 0
    and as a hair above it, which floor(100 sigmoid) turns into 50 and 49."""
    devices = tuple(Device(i, "G2", MILLI, i >= 3) for i in range(8))
    nodes = [Node("n0", 2000, 4096, devices)] + [
        Node(f"n{i}", 2000, 4096, (), healthy=False) for i in (1, 2, 3)]
    state = ClusterState(nodes)
    asked = [Shape(0, 0, 2, MILLI)]
    scorer = FragAwareScorer(typical([Shape(11000, 0, 2, MILLI)]))
    tables = scorer.tables(state)
    keys = Keys.build(asked, state)
    plan = Plan.build(tables, keys, scorer.centre, scorer.strand)
    score, _ = scorer.score_block(state, np.arange(len(state)), keys)
    assert column(tables, state, 0, plan).tolist() == score[0].tolist() == [50.0]


def test_points_count_the_bounds_below_the_rounded_growth() -> None:
    """``int_points`` finds, without rounding, what rounding to a millionth then counting the
    bounds gives: at, just below and just above every threshold and bound too."""
    rng = np.random.default_rng(1)
    t = _ROUNDED_BOUNDS
    x = np.concatenate([rng.normal(0, s, 100_000) for s in (10, 1000, 8000)]
                       + [np.round(rng.normal(0, 3000, 50_000), 6), np.array([np.inf, UNFIT])]
                       + [np.nextafter(b, d) for b in (t, _BOUNDS) for d in (-np.inf, np.inf)]
                       + [t, _BOUNDS])
    want = 100 - _BOUNDS.searchsorted(np.round(x, 6), side="left")
    assert (int_points(x) == want).all()


def test_a_row_masked_by_memory_opens_when_less_memory_is_asked() -> None:
    """A row holds -inf where a node has less free memory than any shape of its key asked so
    far; a later, smaller ask of the same key must still see those nodes."""
    nodes = [Node(f"n{i}", 64_000, memory, tuple(Device(j, "G2") for j in range(gpus)))
             for i, (memory, gpus) in enumerate(((8_192, 4), (65_536, 1), (16_384, 4)))]
    asked = [Shape(1000, 32_768, 1, MILLI), Shape(1000, 4_096, 1, MILLI),
             Shape(1000, 12_000, 1, MILLI), Shape(1000, 3_000, 1, MILLI)]
    got = []
    for after in (None, 0):
        state = ClusterState(nodes)
        placer = Placer(state, FragAwareScorer(typical(asked)), matrix_after=after)
        placed = []
        for k, s in enumerate(asked):
            p = placer.place(Workload(f"w{k}", s.cpu_milli, s.memory_mib, 1, MILLI))
            placed.append(None if p is None else p.node)
        got.append(placed)
    assert got[0] == got[1]
    assert None not in got[1] and got[1][0] == "n1" and got[1][2] == "n2"
