"""FGD's fragmentation growth by table lookups, for many nodes and many shapes at once.

``frag.usable_milli`` sums, over the typical requests t, ``w_t [cpu >= cpu_t] H_t(g)`` where
``H_t`` is the free milli of the devices that could take t (zero unless t can be hosted). Two
facts make that cheap for a node whose devices are all of one model:

* a 1-GPU request (whole or a fraction) can use every healthy device with at least its milli,
  so its ``H_t`` is a sum over devices of ``g_j [g_j >= milli_t]``: additive per device;
* a multi-GPU request uses only fully free devices, so its ``H_t`` depends only on F, the
  number of fully free healthy devices: ``[F >= count_t] 1000 F``.

With the requests sorted by CPU, ``[cpu >= cpu_t]`` keeps a prefix of them, so per model the
whole sum is read from two prefix tables: ``bv[model, tau, v]``, what a device with v free
milli is worth to the first ``tau`` 1-GPU requests (FGD: v times the weight of those it fits),
and ``pw[model, F, tau]`` for the multi-GPU ones. A placement changes one device (a fraction)
or F (whole GPUs) and the CPU, so its loss of usable milli is a handful of lookups, computed
here for (nodes x shapes) in one pass. Nodes with devices of several models take the direct
computation in ``frag``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpucloud.scheduling.filters import feasible
from gpucloud.scheduling.frag import (
    Compiled,
    FloatArray,
    cpu_per_gpu_milli,
    usable_after_fraction,
    usable_after_whole,
    usable_milli,
)
from gpucloud.scheduling.model import MILLI, Shape
from gpucloud.scheduling.state import BoolArray, ClusterState, IntArray

UNFIT = 1e12  # growth of a device that cannot take the fraction (finite: keeps arithmetic NaN-free)


def _formula(x: FloatArray) -> FloatArray:
    with np.errstate(over="ignore"):
        return np.asarray(np.floor(100.0 / (1.0 + np.exp(x / 1000.0))), dtype=np.float64)


def _bounds() -> FloatArray:
    """For L = 1..100, the largest float x with ``_formula(x) >= L`` (bisection to adjacent
    floats), ascending. The formula falls as x grows, so its value is how many bounds are
    >= x: one ``searchsorted`` instead of five passes over the array."""
    level = np.arange(1.0, 101.0)
    lo, hi = np.full(100, -1e7), np.full(100, 1e7)
    while True:
        mid = lo + (hi - lo) / 2
        if ((mid == lo) | (mid == hi)).all():
            return np.asarray(lo[::-1].copy(), dtype=np.float64)
        up = _formula(mid) >= level
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)


# A last bound no finite growth reaches: +inf (a shape that cannot go there) scores -1.
_BOUNDS = np.append(_bounds(), 1e300)


def _rounded_bounds(bounds: FloatArray) -> FloatArray:
    """For each bound b, the least float x with ``round(x, 6) > b`` (bisection to adjacent
    floats). Rounding is monotone, so ``round(x, 6) > b`` exactly when ``x >= t_b``: counting
    the t_b at or below x is counting the bounds below the rounded x, without rounding."""
    step = np.maximum(1.0, np.abs(bounds) * 1e-3)
    lo, hi = bounds - step, bounds + step
    assert (lo.round(6) <= bounds).all() and (hi.round(6) > bounds).all()
    while True:
        mid = lo + (hi - lo) / 2
        if ((mid == lo) | (mid == hi)).all():
            return np.asarray(hi, dtype=np.float64)
        up = mid.round(6) > bounds
        lo, hi = np.where(up, lo, mid), np.where(up, mid, hi)


_ROUNDED_BOUNDS = _rounded_bounds(_BOUNDS)


def int_points(x: FloatArray) -> IntArray:
    """FGD's integer score of a growth x (milli): ``floor(100 sigmoid(-x / 1000))``; -1 for
    +inf. The growth counts as rounded to a millionth of a milli: the same growth summed in
    another order (the per-node column, the block) differs in its last bits, and must not land
    on the other side of a score's bound. (``100 - #(bounds < round(x, 6))``, by
    ``_ROUNDED_BOUNDS``.)"""
    found: IntArray = _ROUNDED_BOUNDS.searchsorted(x, side="right")
    return 100 - found


def points(x: FloatArray) -> FloatArray:
    """``int_points`` as floats."""
    return np.asarray(int_points(x), dtype=np.float64)


@dataclass(frozen=True)
class Keys:
    """Shapes to score side by side (memory is a filter, not scored), split by kind."""

    shapes: tuple[Shape, ...]
    cpu: IntArray
    count: IntArray
    milli: IntArray  # per device; 0 for CPU-only shapes
    req: IntArray  # total GPU milli
    allowed: BoolArray  # (K, models + 1)
    plain: IntArray  # CPU-only and whole-GPU shapes
    whole: IntArray  # whole-GPU shapes, positions within ``plain``
    frac: IntArray  # fractional shapes
    by_model: BoolArray  # ``allowed`` transposed, (models + 1, K)
    frac_milli: IntArray  # milli for fractions, 0 for other shapes
    whole_count: IntArray  # GPU count for whole-GPU shapes, 0 for other shapes
    is_frac: FloatArray  # 1.0 for fractions

    @classmethod
    def build(cls, shapes: Sequence[Shape], state: ClusterState) -> Keys:
        count = np.array([s.gpu_count for s in shapes], dtype=np.int64)
        milli = np.array([s.gpu_milli if s.gpu_count else 0 for s in shapes], dtype=np.int64)
        is_frac = (count == 1) & (milli < MILLI)
        plain = np.flatnonzero(~is_frac)
        anywhere = np.ones(len(state.models) + 1, dtype=np.bool_)  # CPU-only: any node
        allowed = np.array([state.model_mask(s.gpu_models) if s.gpu_count else anywhere
                            for s in shapes], dtype=np.bool_
                           ).reshape(len(shapes), len(state.models) + 1)
        return cls(tuple(shapes), np.array([s.cpu_milli for s in shapes], dtype=np.int64),
                   count, milli, count * milli, allowed, plain,
                   np.flatnonzero(count[plain] > 0), np.flatnonzero(is_frac),
                   np.ascontiguousarray(allowed.T), np.where(is_frac, milli, 0),
                   np.where(is_frac, 0, count), is_frac.astype(np.float64))


@dataclass(frozen=True)
class Growth:
    """Fragmentation growth of each (node, shape) and what else a score needs."""

    plain: FloatArray  # (n, len(keys.plain))
    frac: FloatArray  # (n, len(keys.frac), D); UNFIT where the device cannot take it
    ok: BoolArray  # (n, K): CPU, model and (whole GPUs) enough fully free devices
    stranded: FloatArray  # (n, K): growth of CPU-stranded GPU milli


def device_worth(milli: IntArray, count: IntArray, aw: FloatArray) -> FloatArray:
    """(models + 1, G, MILLI + 1): what a device with v free milli is worth to 1-GPU request
    t, weighted (0 for multi-GPU requests): FGD counts all v as usable by a request it fits."""
    models, g = aw.shape
    v = np.arange(MILLI + 1)
    single = np.flatnonzero(count == 1)
    out = np.zeros((models, g, MILLI + 1))
    out[:, single] = aw[:, single, None] * ((milli[single, None] <= v) * v)
    return out


class FragTables:
    """Per-model lookup tables of one distribution against one state, and per node the
    prefix vector of its usable milli (refreshed when the node's version moves)."""

    def __init__(self, dist: Compiled, state: ClusterState) -> None:
        self._state = weakref.ref(state)
        self.dist = dist
        gpu = np.flatnonzero(dist.weight > 0)  # CPU-only requests weigh 0
        order = gpu[np.argsort(dist.cpu[gpu], kind="stable")]
        self.theta = dist.cpu[order]  # CPU of the GPU requests, ascending
        count, milli = dist.count[order], dist.milli[order]
        aw = dist.allowed[:, order] * dist.weight[order]  # (models + 1, G)
        models, g, width = aw.shape[0], order.size, state.width
        # bv[model, tau, v]: what a device with v free milli is worth to the first tau 1-GPU
        # requests (FGD: v to each request it fits).
        worth = device_worth(milli, count, aw)
        self.bv = np.zeros((models, g + 1, MILLI + 1))
        self.bv[:, 1:] = np.cumsum(worth, axis=1)
        full = np.arange(width + 1)
        multi = np.zeros((models, width + 1, g))
        for t in np.flatnonzero(count >= 2):
            multi[:, :, t] = aw[:, t, None] * (MILLI * full * (full >= count[t]))
        self.pw = np.zeros((models, width + 1, g + 1))
        self.pw[:, :, 1:] = np.cumsum(multi, axis=2)
        # The differences the multi-GPU requests see when F drops by one, and wt[model, F,
        # tau, n]: usable milli lost by taking n of F fully free devices.
        self.pw_step = self.pw - self.pw[:, np.maximum(full - 1, 0)]
        self.bv_full = np.ascontiguousarray(self.bv[:, :, MILLI])
        # bv shifted by one with -inf first: bv_left[.., 1 + max(v, -1)] is -inf for v < 0,
        # so a device a fraction does not fit loses "infinitely" much (frag_column).
        self.bv_left = np.concatenate((np.full((models, g + 1, 1), -np.inf), self.bv), axis=2)
        self.wt = np.ascontiguousarray(
            full * self.bv_full[:, None, :, None]
            + (self.pw[:, :, :, None]
               - self.pw[:, np.maximum(full[:, None] - full, 0)].transpose(0, 1, 3, 2)))
        self.theta_list = self.theta.tolist()
        n = len(state)
        present = np.arange(width) < state.gpu_count[:, None]
        self.fast: BoolArray = ((state.gpu_model == state.gpu_model[:, :1]) | ~present).all(1)
        all_ok = np.asarray((state.gpu_ok | ~present).all(axis=1), dtype=np.bool_)
        self.all_ok: list[bool] = all_ok.tolist()
        self.model = state.gpu_model[:, 0].copy()  # the node's (first device's) model
        # CPU-stranded GPU (frag.stranded_milli) at each node's model's CPU per GPU milli.
        ratio = cpu_per_gpu_milli(dist)
        self.has_ratio = (ratio > 0).astype(np.float64)
        self.safe_ratio = np.where(ratio > 0, ratio, 1.0)
        self.ratio_of: list[tuple[float, float]] = list(zip(  # per model: (ratio, has one)
            self.safe_ratio.tolist(), self.has_ratio.tolist(), strict=True))
        self.version = np.full(n, -1, dtype=np.int64)
        self.prefix = np.zeros((n, g + 1))  # usable milli if only the first tau requests fit
        self.usable = np.zeros(n)
        self.full = np.zeros(n, dtype=np.int64)  # fully free healthy devices
        self.gpu = np.zeros((n, width), dtype=np.int64)  # free milli, 0 on unhealthy devices
        self.gpu_total = np.zeros(n)
        self.stranded = np.zeros(n)
        self._keys: dict[Shape, Keys] = {}
        self._prefix: dict[tuple[int, ...], FloatArray] = {}
        self._worth: dict[tuple[int, int], list[float]] = {}

    def worth_list(self, model: int, tau: int) -> list[float]:
        """``bv[model, tau]`` as a list, cached: one device at a time reads it in Python."""
        key = (model, tau)
        got = self._worth.get(key)
        if got is None:
            got = self._worth[key] = self.bv[model, tau].tolist()
        return got

    def prefix_of(self, model: int, free: list[int], full: int) -> FloatArray:
        """(G + 1,): usable milli of a node of ``model`` with devices of ``free`` (sorted)
        milli (``full`` of them fully free) if only the first tau requests fit, cached."""
        key = (model, *free)
        prefix = self._prefix.get(key)
        if prefix is None:
            prefix = self._prefix[key] = (np.add.reduce(self.bv[model][:, free], axis=1)
                                          + self.pw[model, full])
        return prefix

    def _refresh(self, state: ClusterState, idx: IntArray) -> None:
        stale = idx[self.version[idx] != state.version[idx]]
        if not stale.size:
            return
        gpu = state.gpu_free[stale] * state.gpu_ok[stale]
        model = self.model[stale]
        full = (gpu == MILLI).sum(axis=1)
        prefix = self.bv[model[:, None], :, gpu].sum(axis=1) + self.pw[model, full]
        tau = np.searchsorted(self.theta, state.cpu_free[stale], side="right")
        self.prefix[stale] = prefix
        self.usable[stale] = prefix[np.arange(stale.size), tau]
        self.full[stale] = full
        self.gpu[stale] = gpu
        gpu_total = gpu.sum(axis=1).astype(np.float64)
        self.gpu_total[stale] = gpu_total
        self.stranded[stale] = self._stranded(gpu_total, state.cpu_free[stale], model)
        self.version[stale] = state.version[stale]

    def _stranded(self, gpu: FloatArray, cpu: IntArray, model: IntArray) -> FloatArray:
        return np.asarray(np.maximum(0.0, gpu - cpu / self.safe_ratio[model])
                          * self.has_ratio[model], dtype=np.float64)

    def keys(self, state: ClusterState, shape: Shape) -> Keys:
        """One shape as Keys, cached: the single-shape scorer path asks for it per call."""
        keys = self._keys.get(shape)
        if keys is None:
            keys = self._keys[shape] = Keys.build([shape], state)
        return keys

    def growth_block(self, state: ClusterState, idx: IntArray, keys: Keys) -> Growth:
        """Growth of placing each of ``keys`` on each node of ``idx``, as ``frag`` defines it
        (before minus after usable milli, minus the request)."""
        if self._state() is not state:
            raise ValueError("tables built for another state")
        self._refresh(state, idx)
        fast = self.fast[idx]
        model = self.model[idx]
        cpu = state.cpu_free[idx]
        left_cpu = cpu[:, None] - keys.cpu
        tau = np.searchsorted(self.theta, left_cpu, side="right")
        # Usable milli lost by the CPU the placement takes (requests it no longer hosts).
        loss = self.usable[idx, None] - np.take_along_axis(self.prefix[idx], tau, axis=1)
        ok = (left_cpu >= 0) & keys.allowed[:, model].T
        full = self.full[idx, None]
        plain = loss[:, keys.plain]
        if keys.whole.size:
            w = keys.plain[keys.whole]
            n, tw, mw = keys.count[w], tau[:, w], model[:, None]
            taken = n * self.bv_full[mw, tw]
            multi = self.pw[mw, full, tw] - self.pw[mw, np.maximum(full - n, 0), tw]
            plain[:, keys.whole] = plain[:, keys.whole] + taken + multi - MILLI * n
            ok[:, w] &= full >= n
        frac = self._frac(idx, keys, tau, loss, model, full)
        stranded = self._stranded(self.gpu_total[idx, None] - keys.req, left_cpu,
                                  model[:, None]) - self.stranded[idx, None]
        if not fast.all():
            self._direct(state, idx, keys, ~fast, plain, frac, ok)
        return Growth(plain, frac, ok, stranded)

    def _frac(self, idx: IntArray, keys: Keys, tau: IntArray, loss: FloatArray,
              model: IntArray, full: IntArray) -> FloatArray:
        if not keys.frac.size:
            return np.zeros((idx.size, 0, self.gpu.shape[1]))
        m = keys.milli[keys.frac][:, None]
        gpu = self.gpu[idx][:, None, :]  # (n, 1, D)
        left = gpu - m  # (n, Kf, D)
        tf = tau[:, keys.frac]
        at = ((model[:, None] * self.bv.shape[1] + tf) * (MILLI + 1))[..., None]
        flat = self.bv.reshape(-1)
        before = flat[at + gpu]
        after = flat[at + np.maximum(left, 0)]
        # A fully free device that takes a fraction also leaves the multi-GPU requests' F.
        mf = model[:, None]
        multi = self.pw[mf, full, tf] - self.pw[mf, np.maximum(full - 1, 0), tf]
        dev = before - after + (gpu == MILLI) * multi[..., None]
        fits = (left >= 0) & keys.allowed[keys.frac][:, model].T[..., None]
        return np.where(fits, (loss[:, keys.frac] - m[:, 0])[..., None] + dev, UNFIT)

    def _direct(self, state: ClusterState, idx: IntArray, keys: Keys, slow: BoolArray,
                plain: FloatArray, frac: FloatArray, ok: BoolArray) -> None:
        """The rows of nodes with mixed models, shape by shape, from ``frag`` directly."""
        nodes = idx[slow]
        before = usable_milli(state, self.dist, nodes)
        for k, shape in enumerate(keys.shapes):
            ok[slow, k] = feasible(state, Shape(shape.cpu_milli, 0, shape.gpu_count,
                                                shape.gpu_milli, shape.gpu_models), nodes)
            if shape.is_fractional:
                after, fits = usable_after_fraction(state, self.dist, nodes, shape)
                j = int(np.searchsorted(keys.frac, k))
                frac[slow, j] = np.where(fits, before[:, None] - after - shape.gpu_milli, UNFIT)
            else:
                j = int(np.searchsorted(keys.plain, k))
                plain[slow, j] = (before - usable_after_whole(state, self.dist, nodes, shape)
                                  - shape.total_gpu_milli)

    def growth(self, state: ClusterState, shape: Shape,
               idx: IntArray) -> tuple[FloatArray, IntArray | None]:
        """One shape: growth per node (fractions: per node and device, (n, D), ``UNFIT``
        where the device cannot take it), as ``_FragBase.growth`` returns it."""
        g = self.growth_block(state, idx, self.keys(state, shape))
        if shape.is_fractional:
            return g.frac[:, 0], None
        return g.plain[:, 0], np.full(idx.size, -1, dtype=np.int64)

    def stranding_growth(self, state: ClusterState, shape: Shape,
                         idx: IntArray) -> FloatArray:
        """Growth of CPU-stranded GPU milli if ``shape`` goes on each node of ``idx``."""
        return self.growth_block(state, idx, self.keys(state, shape)).stranded[:, 0]

    def score_block(self, state: ClusterState, idx: IntArray, keys: Keys, centre: float,
                    strand: float) -> tuple[FloatArray, IntArray]:
        """Integer scores (n, K) of ``points(growth + strand * stranding growth + centre *
        request)``, -1 where a shape does not fit the node (CPU, model, free devices; memory
        and health are the caller's filters), and each fraction's device: the first of best
        score, as FGD does (-1 for other shapes)."""
        g = self.growth_block(state, idx, keys)
        score = np.empty((idx.size, len(keys.shapes)))
        device = np.full(score.shape, -1, dtype=np.int64)
        plain = g.plain
        if strand:
            plain = plain + strand * g.stranded[:, keys.plain]
        score[:, keys.plain] = points(plain + centre * keys.req[keys.plain])
        if keys.frac.size:
            unfit = g.frac >= UNFIT
            frac = g.frac
            if strand:  # the node's term, on every device
                frac = frac + (strand * g.stranded[:, keys.frac])[..., None]
            pts = points(frac + (centre * keys.req[keys.frac])[:, None])
            pts[unfit] = -1.0  # never pick a device that cannot take it
            score[:, keys.frac] = pts.max(axis=2)
            device[:, keys.frac] = pts.argmax(axis=2)
        score[~g.ok] = -1.0
        return score, device
