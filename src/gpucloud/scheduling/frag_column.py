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
from gpucloud.scheduling.frag_tables import _BOUNDS, FragTables, Keys, int_points
from gpucloud.scheduling.model import MILLI, Shape
from gpucloud.scheduling.state import BoolArray, ClusterState, IntArray

_BOUND_LIST = _BOUNDS.tolist()


@dataclass(frozen=True)
class _CpuPart:
    usable: int  # typical requests the node's free CPU hosts
    tau: IntArray  # (K,) those it still hosts after each shape
    cpu_ok: BoolArray  # (K,) enough CPU for the shape
    tf: IntArray  # tau of the fractional shapes
    at: IntArray  # their rows' offsets in the model's flattened ``bv_left``


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
    # Caches, filled as node states are met (see ``_partial``).
    partial: dict[tuple[int, ...], FloatArray] = field(default_factory=dict)
    fits: dict[tuple[int, int], BoolArray] = field(default_factory=dict)  # by (model, F)
    by_cpu: dict[int, _CpuPart] = field(default_factory=dict)  # by CPU interval
    by_full: dict[tuple[int, int, int], tuple[FloatArray, FloatArray | None]] = field(
        default_factory=dict)  # by (model, F, CPU interval)
    by_value: dict[tuple[int, int, int], FloatArray] = field(
        default_factory=dict)  # by (model, CPU interval, a device's free milli)
    by_values: dict[tuple[int, ...], FloatArray] = field(
        default_factory=dict)  # by (model, F, CPU interval, the devices' distinct free milli)

    @classmethod
    def build(cls, t: FragTables, keys: Keys, centre: float, strand: float) -> Plan:
        theta = np.unique(t.theta)
        breaks = np.unique(np.concatenate((theta, keys.cpu, (theta[:, None] + keys.cpu).ravel())))
        return cls(keys, centre, strand, np.asarray((centre - 1.0) * keys.req, dtype=np.float64),
                   keys.cpu / t.safe_ratio[:, None] - keys.req, keys.milli[keys.frac],
                   np.minimum(keys.whole_count, t.wt.shape[3] - 1), breaks.tolist())


def _by_cpu(t: FragTables, plan: Plan, i: int, cpu: int) -> _CpuPart:
    """What depends on the node's free CPU only through its interval ``i`` of ``plan.breaks``
    (shapes' fit and the typical requests each leaves hosted)."""
    part = plan.by_cpu.get(i)
    if part is None:
        keys = plan.keys
        left_cpu = cpu - keys.cpu
        tau = t.theta.searchsorted(left_cpu, side="right")
        tf = tau[keys.frac]
        part = plan.by_cpu[i] = _CpuPart(bisect_right(t.theta_list, cpu), tau, left_cpu >= 0,
                                         tf, tf * (MILLI + 2))
    return part


def _by_full(t: FragTables, plan: Plan, model: int, full: int, i: int,
             part: _CpuPart) -> tuple[FloatArray, FloatArray | None]:
    """(the whole-GPU term of the scores, +inf where a shape cannot go; the fractions'
    loss on a fully free device, 0 for other shapes, None without one): by model, F and
    CPU interval."""
    key = (model, full, i)
    got = plan.by_full.get(key)
    if got is None:
        keys = plan.keys
        fits = plan.fits.get((model, full))
        if fits is None:  # model allowed and, for whole GPUs, enough fully free devices
            fits = plan.fits[(model, full)] = keys.by_model[model] & (full >= keys.whole_count)
        wt = np.where(part.cpu_ok & fits, t.wt[model, full][part.tau, plan.take], np.inf)
        whole = None
        if full:
            whole = _device_loss(t, plan, model, i, MILLI, part)
            whole[keys.frac] += t.pw_step[model, full, part.tf]
        got = plan.by_full[key] = (wt, whole)
    return got


def _device_loss(t: FragTables, plan: Plan, model: int, i: int, v: int,
                 part: _CpuPart) -> FloatArray:
    """(K,): the usable milli each fraction costs on a device with ``v`` free milli (+inf if
    it does not fit), 0 for other shapes; by model, CPU interval and v."""
    key = (model, i, v)
    got = plan.by_value.get(key)
    if got is None:
        # bv_left[., 1 + v] = bv[., v], bv_left[., 0] = -inf: a device too small for the
        # fraction (v - milli < 0) loses infinitely much.
        flat = t.bv_left[model].reshape(-1)
        got = np.zeros(len(plan.keys.shapes))
        got[plan.keys.frac] = (flat[part.at + (v + 1)]
                               - flat[part.at + np.maximum(v + 1 - plan.frac_milli, 0)])
        if v != MILLI:
            plan.by_value[key] = got
    return got


def _partial(t: FragTables, model: int, free: list[int], cpu: int, i: int,
             plan: Plan) -> FloatArray:
    """Everything in the scores but the stranding term, +inf where a shape cannot go: a
    function of the node's model, its sorted free milli and which side of each of
    ``plan.breaks`` its free CPU is on (interval ``i``)."""
    full = free.count(MILLI)
    prefix = t.prefix_of(model, free, full)
    part = _by_cpu(t, plan, i, cpu)
    wt, whole = _by_full(t, plan, model, full, i, part)
    y = (float(prefix[part.usable]) + plan.offset) - prefix[part.tau] + wt
    if plan.keys.frac.size:
        values = sorted(set(free), reverse=True)  # 1000 first
        key = (model, full, i, *values)
        least = plan.by_values.get(key)
        if least is None:  # each fraction on its best device
            losses = [_device_loss(t, plan, model, i, v, part)
                      for v in values[1 if full else 0:]]
            if whole is not None:
                losses.insert(0, whole)
            least = plan.by_values[key] = (losses[0] if len(losses) == 1
                                           else np.minimum.reduce(losses))
        y += least
    return y


def _free(t: FragTables, state: ClusterState, node: int) -> tuple[IntArray, list[int]]:
    row = state.gpu_free[node] if t.all_ok[node] else state.gpu_free[node] * state.gpu_ok[node]
    return row, row.tolist()


def _stranding(t: FragTables, model: int, free: list[int], cpu: int,
               strand: float) -> tuple[float, float]:
    """(weight, gap): the score adds ``weight * (max(0, gap + cpu_over) - max(0, gap))``,
    gap being the free GPU milli less what the free CPU can feed."""
    ratio, has = t.ratio_of[model]
    return strand * has, float(sum(free)) - cpu / ratio


def column(t: FragTables, state: ClusterState, node: int, plan: Plan) -> IntArray:
    """Integer scores (K,) of the plan's shapes on ``node``, -1 where one cannot go there.

    Node states that differ only in free CPU between two of ``plan.breaks`` share all but
    the stranding term, so that part is cached by (model, CPU interval, sorted free milli).
    """
    if not t.fast[node]:
        score = t.score_block(state, np.array([node]), plan.keys, plan.centre, plan.strand)
        return np.asarray(score[0][0], dtype=np.int64)
    model = int(t.model[node])
    _, free = _free(t, state, node)
    cpu = int(state.cpu_free[node])
    free.sort()
    i = bisect_right(plan.breaks, cpu)
    key = (model, i, *free)
    y = plan.partial.get(key)
    if y is None:
        y = plan.partial[key] = _partial(t, model, free, cpu, i, plan)
    if plan.strand:
        weight, gap = _stranding(t, model, free, cpu, plan.strand)
        if weight:
            grown = np.maximum(0.0, gap + plan.cpu_over[model]) - max(0.0, gap)
            y = y + (grown if weight == 1.0 else weight * grown)
    return int_points(y)  # -1 where y is +inf


def fraction_device(t: FragTables, state: ClusterState, node: int, shape: Shape,
                    centre: float, strand: float) -> int:
    """The device a fraction takes on ``node``: the first of best score (as ``column``
    scores the best one)."""
    if not t.fast[node]:
        keys = t.keys(state, shape)
        return int(t.score_block(state, np.array([node]), keys, centre, strand)[1][0, 0])
    model = int(t.model[node])
    _, free = _free(t, state, node)
    cpu = int(state.cpu_free[node])
    full = free.count(MILLI)
    m = shape.gpu_milli
    prefix = t.prefix_of(model, sorted(free), full)
    usable = float(prefix[bisect_right(t.theta_list, cpu)])
    tau = bisect_right(t.theta_list, cpu - shape.cpu_milli)
    y = (usable + (centre - 1.0) * m) - float(prefix[tau]) + float(t.wt[model, full, tau, 0])
    weight, gap = _stranding(t, model, free, cpu, strand)
    over = shape.cpu_milli / t.ratio_of[model][0] - m
    extra = weight * (max(0.0, gap + over) - max(0.0, gap)) if strand else 0.0
    bv = t.worth_list(model, tau)
    step = float(t.pw_step[model, full, tau])
    score_of = {}  # by free milli: devices with as much free score alike
    for v in set(free):
        if v >= m:
            dev = (bv[v] - bv[v - m]) + (step if v == MILLI else 0.0)
            score_of[v] = 100 - bisect_left(_BOUND_LIST, (y + dev) + extra)
    best = max(score_of.values(), default=None)
    return next((j for j, v in enumerate(free) if score_of.get(v) == best), -1)
