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
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gpucloud.scheduling.frag import FloatArray
from gpucloud.scheduling.frag_tables import _BOUNDS, FragTables, Keys, points
from gpucloud.scheduling.model import MILLI, Shape
from gpucloud.scheduling.state import ClusterState, IntArray

_BOUND_LIST = _BOUNDS.tolist()


@dataclass(frozen=True)
class Plan:
    """Per-shape constants of one scorer's score, for ``column``."""

    keys: Keys
    centre: float
    strand: float
    offset: FloatArray  # (centre - 1) * request: the score's terms besides losses
    cpu_over: FloatArray  # (models + 1, K): shape CPU / model's CPU per GPU milli - request
    frac_milli: IntArray  # (Kf,)
    take: IntArray  # whole GPUs each shape takes, capped at the widest node (beyond: unfit)

    @classmethod
    def build(cls, t: FragTables, keys: Keys, centre: float, strand: float) -> Plan:
        return cls(keys, centre, strand, np.asarray((centre - 1.0) * keys.req, dtype=np.float64),
                   keys.cpu / t.safe_ratio[:, None] - keys.req, keys.milli[keys.frac],
                   np.minimum(keys.whole_count, t.wt.shape[3] - 1))


class _Node(NamedTuple):
    model: int
    free: list[int]
    full: int
    prefix: FloatArray
    cpu: int
    base: float  # usable milli, less the stranding term's current value
    gap: float  # free GPU milli less what the free CPU can feed


def _node(t: FragTables, state: ClusterState, node: int, strand: float) -> _Node:
    model = int(t.model[node])
    row = state.gpu_free[node] if t.all_ok[node] else state.gpu_free[node] * state.gpu_ok[node]
    free = row.tolist()
    full = free.count(MILLI)
    prefix = np.add.reduce(t.bv[model][:, row], axis=1) + t.pw[model, full]
    cpu = int(state.cpu_free[node])
    usable = float(prefix[bisect_right(t.theta_list, cpu)])
    ratio, has = t.ratio_of[model]
    gap = float(sum(free)) - cpu / ratio
    return _Node(model, free, full, prefix, cpu, usable - strand * has * max(0.0, gap), gap)


def column(t: FragTables, state: ClusterState, node: int, plan: Plan) -> FloatArray:
    """Scores (K,) of the plan's shapes on ``node``, -1 where one cannot go there."""
    keys = plan.keys
    if not t.fast[node]:
        score: FloatArray = t.score_block(state, np.array([node]), keys, plan.centre,
                                          plan.strand)[0][0]
        return score
    n = _node(t, state, node, plan.strand)
    left_cpu = n.cpu - keys.cpu
    tau = t.theta.searchsorted(left_cpu, side="right")
    y = (n.base + plan.offset) - n.prefix[tau] + t.wt[n.model, n.full][tau, plan.take]
    if plan.strand:
        y += (plan.strand * t.ratio_of[n.model][1]) * np.maximum(0.0, n.gap
                                                                 + plan.cpu_over[n.model])
    ok = (left_cpu >= 0) & keys.by_model[n.model] & (n.full >= keys.whole_count)
    if keys.frac.size:
        values = np.array(sorted(set(n.free), reverse=True), dtype=np.int64)  # 1000 first
        tf = tau[keys.frac]
        at = tf * (MILLI + 1)
        left = values - plan.frac_milli[:, None]  # (Kf, values); < 0: does not fit
        dev = (t.bv[n.model].reshape(-1)[at[:, None] + values]
               - t.bv_left[n.model].reshape(-1)[(at + tf + 1)[:, None] + np.maximum(left, -1)])
        if n.full:
            dev[:, 0] += t.pw_step[n.model, n.full, tf]
        y[keys.frac] += np.minimum.reduce(dev, axis=1)
        ok &= y < np.inf  # some device takes the fraction
    return np.where(ok, points(y), -1.0)


def fraction_device(t: FragTables, state: ClusterState, node: int, shape: Shape,
                    centre: float, strand: float) -> int:
    """The device a fraction takes on ``node``: the first of best score."""
    if not t.fast[node]:
        keys = t.keys(state, shape)
        return int(t.score_block(state, np.array([node]), keys, centre, strand)[1][0, 0])
    n = _node(t, state, node, strand)
    m = shape.gpu_milli
    left_cpu = n.cpu - shape.cpu_milli
    tau = bisect_right(t.theta_list, left_cpu)
    y = (n.base + (centre - 1.0) * m) - float(n.prefix[tau]) + float(t.wt[n.model, n.full, tau, 0])
    if strand:
        weight = strand * float(t.has_ratio[n.model])
        over = shape.cpu_milli / float(t.safe_ratio[n.model]) - m
        y += weight * max(0.0, n.gap + over)
    bv = t.bv[n.model, tau]
    step = float(t.pw_step[n.model, n.full, tau])
    best, device = -1, -1
    for j, v in enumerate(n.free):
        if v < m:
            continue
        dev = float(bv[v] - bv[v - m]) + (step if v == MILLI else 0.0)
        score = 100 - bisect_left(_BOUND_LIST, y + dev)
        if score > best:
            best, device = score, j
    return device
