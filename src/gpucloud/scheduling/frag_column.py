"""One node state, every shape: the column a ScoreMatrix stores for a state.

The arithmetic of ``FragTables.score_block`` for one node, in arrays over the shapes: the
CPU-side loss and, for whole GPUs, the devices and F they take (table ``wt``), plus, for a
fraction, the least growth over the node's distinct device values of
``bv[tau, v] - bv[tau, v - milli]`` (``bv``: v times the 1-GPU weight a device with v free milli
serves) and the multi-GPU step when a fully free device is split. The score of the best
device is the node's; which device that is (the first of best score, as FGD takes it) is
worked out only for the node a fraction goes to (``fraction_device``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

import numpy as np

from gpucloud.scheduling.frag import FloatArray
from gpucloud.scheduling.frag_tables import _BOUNDS, FragTables, Keys, points
from gpucloud.scheduling.model import MILLI, Shape
from gpucloud.scheduling.state import BoolArray, ClusterState, IntArray

_BOUND_LIST = _BOUNDS.tolist()


@dataclass(frozen=True)
class Plan:
    """Per-shape constants of one scorer's score, for ``column``, and the partial columns
    of the node states seen so far (see ``column``)."""

    keys: Keys
    centre: float
    strand: float
    offset: FloatArray  # (centre - 1) * request: the score's terms besides losses
    cpu_over: FloatArray  # (models + 1, K): shape CPU / model's CPU per GPU milli - request
    frac_milli: IntArray  # (Kf,)
    take: IntArray  # whole GPUs each shape takes, capped at the widest node (beyond: unfit)
    # Free CPU values where some shape's fit or some typical request's hosting changes.
    breaks: list[int]
    partial: dict[tuple[int, ...], FloatArray] = field(default_factory=dict)
    fits: dict[tuple[int, int], BoolArray] = field(default_factory=dict)  # by (model, F)

    @classmethod
    def build(cls, t: FragTables, keys: Keys, centre: float, strand: float) -> Plan:
        theta = np.unique(t.theta)
        breaks = np.unique(np.concatenate((theta, keys.cpu, (theta[:, None] + keys.cpu).ravel())))
        return cls(keys, centre, strand, np.asarray((centre - 1.0) * keys.req, dtype=np.float64),
                   keys.cpu / t.safe_ratio[:, None] - keys.req, keys.milli[keys.frac],
                   np.minimum(keys.whole_count, t.wt.shape[3] - 1), breaks.tolist())


def _partial(t: FragTables, model: int, row: IntArray, free: list[int], cpu: int,
             plan: Plan) -> FloatArray:
    """Everything in the scores but the stranding term, +inf where a shape cannot go: a
    function of the node's model, its sorted free milli and which side of each of
    ``plan.breaks`` its free CPU is on."""
    keys = plan.keys
    full = free.count(MILLI)
    prefix = np.add.reduce(t.bv[model][:, row], axis=1) + t.pw[model, full]
    usable = float(prefix[bisect_right(t.theta_list, cpu)])
    left_cpu = cpu - keys.cpu
    tau = t.theta.searchsorted(left_cpu, side="right")
    y = (usable + plan.offset) - prefix[tau] + t.wt[model, full][tau, plan.take]
    fits = plan.fits.get((model, full))
    if fits is None:  # model allowed and, for whole GPUs, enough fully free devices
        fits = plan.fits[(model, full)] = keys.by_model[model] & (full >= keys.whole_count)
    if keys.frac.size:
        # bv_left[., 1 + v] = bv[., v], bv_left[., 0] = -inf: a device too small for the
        # fraction (v - milli < 0) loses infinitely much.
        shifted = np.array(sorted(set(free), reverse=True), dtype=np.int64) + 1  # 1000 first
        tf = tau[keys.frac]
        at = (tf * (MILLI + 2))[:, None]
        flat = t.bv_left[model].reshape(-1)
        dev = flat[at + shifted] - flat[at + np.maximum(shifted - plan.frac_milli[:, None], 0)]
        if full:
            dev[:, 0] += t.pw_step[model, full, tf]
        y[keys.frac] += np.minimum.reduce(dev, axis=1)  # +inf if no device takes it
    return np.where((left_cpu >= 0) & fits, y, np.inf)


def _free(t: FragTables, state: ClusterState, node: int) -> tuple[IntArray, list[int]]:
    row = state.gpu_free[node] if t.all_ok[node] else state.gpu_free[node] * state.gpu_ok[node]
    return row, row.tolist()


def _stranding(t: FragTables, model: int, free: list[int], cpu: int,
               strand: float) -> tuple[float, float]:
    """(weight, gap): the score adds ``weight * (max(0, gap + cpu_over) - max(0, gap))``,
    gap being the free GPU milli less what the free CPU can feed."""
    ratio, has = t.ratio_of[model]
    return strand * has, float(sum(free)) - cpu / ratio


def column(t: FragTables, state: ClusterState, node: int, plan: Plan) -> FloatArray:
    """Scores (K,) of the plan's shapes on ``node``, -1 where one cannot go there.

    Node states that differ only in free CPU between two of ``plan.breaks`` share all but
    the stranding term, so that part is cached by (model, CPU interval, sorted free milli).
    """
    if not t.fast[node]:
        score: FloatArray = t.score_block(state, np.array([node]), plan.keys, plan.centre,
                                          plan.strand)[0][0]
        return score
    model = int(t.model[node])
    row, free = _free(t, state, node)
    cpu = int(state.cpu_free[node])
    key = (model, bisect_right(plan.breaks, cpu), *sorted(free))
    y = plan.partial.get(key)
    if y is None:
        y = plan.partial[key] = _partial(t, model, row, free, cpu, plan)
    if plan.strand:
        weight, gap = _stranding(t, model, free, cpu, plan.strand)
        y = y + (weight * (np.maximum(0.0, gap + plan.cpu_over[model]) - max(0.0, gap)))
    return points(y)  # -1 where y is +inf


def fraction_device(t: FragTables, state: ClusterState, node: int, shape: Shape,
                    centre: float, strand: float) -> int:
    """The device a fraction takes on ``node``: the first of best score (as ``column``
    scores the best one)."""
    if not t.fast[node]:
        keys = t.keys(state, shape)
        return int(t.score_block(state, np.array([node]), keys, centre, strand)[1][0, 0])
    model = int(t.model[node])
    row, free = _free(t, state, node)
    cpu = int(state.cpu_free[node])
    full = free.count(MILLI)
    m = shape.gpu_milli
    prefix = np.add.reduce(t.bv[model][:, row], axis=1) + t.pw[model, full]
    usable = float(prefix[bisect_right(t.theta_list, cpu)])
    tau = bisect_right(t.theta_list, cpu - shape.cpu_milli)
    y = (usable + (centre - 1.0) * m) - float(prefix[tau]) + float(t.wt[model, full, tau, 0])
    weight, gap = _stranding(t, model, free, cpu, strand)
    over = shape.cpu_milli / t.ratio_of[model][0] - m
    extra = weight * (max(0.0, gap + over) - max(0.0, gap)) if strand else 0.0
    bv = t.bv[model, tau]
    step = float(t.pw_step[model, full, tau])
    best, device = -1, -1
    for j, v in enumerate(free):
        if v < m:
            continue
        dev = float(bv[v] - bv[v - m]) + (step if v == MILLI else 0.0)
        score = 100 - bisect_left(_BOUND_LIST, (y + dev) + extra)
        if score > best:
            best, device = score, j
    return device
