"""Fragmentation: the expected GPU share that the next workload could not use.

Following FGD (Weng et al., ATC '23): a node's fragmentation for one typical request is all of
its free GPU milli if the request cannot be hosted there (too few matching devices with enough
room, or too little CPU), else the free milli on devices too small for it. Averaging over the
request distribution gives the node's expected fragmentation. Scorers rank a placement by how
much it grows that expectation; everything here is vectorised over nodes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gpucloud.scheduling.model import Shape
from gpucloud.scheduling.state import BoolArray, ClusterState, IntArray

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Distribution:
    """Typical request shapes (memory ignored) and their probabilities, most common first."""

    shapes: tuple[Shape, ...]
    weights: tuple[float, ...]


def typical(shapes: Iterable[Shape], coverage: float = 0.95) -> Distribution:
    """The most common shapes covering ``coverage`` of the requests, renormalised.

    Ties in popularity go to the larger shape, as in the FGD simulator, so the result does not
    depend on input order.
    """
    counts = Counter(Shape(s.cpu_milli, 0, s.gpu_count, s.gpu_milli, s.gpu_models)
                     for s in shapes)
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda kv: (
        -kv[1], -kv[0].cpu_milli, -kv[0].gpu_milli, -kv[0].gpu_count,
        tuple(sorted(kv[0].gpu_models or ()))), reverse=False)
    chosen: list[tuple[Shape, int]] = []
    covered = 0
    for shape, n in ranked:
        if covered >= coverage * total:
            break
        chosen.append((shape, n))
        covered += n
    return Distribution(tuple(s for s, _ in chosen), tuple(n / covered for _, n in chosen))


@dataclass(frozen=True)
class Compiled:
    """A distribution laid out against one cluster's model codes."""

    cpu: IntArray  # (T,)
    milli: IntArray  # (T,) per device; 0 for CPU-only shapes
    count: IntArray  # (T,)
    allowed: BoolArray  # (models + 1, T): may shape t use a device of model code m
    weight: FloatArray  # (T,), zero for CPU-only shapes: they never see GPU milli

    @classmethod
    def build(cls, dist: Distribution, state: ClusterState) -> Compiled:
        allowed = np.stack([state.model_mask(s.gpu_models) for s in dist.shapes], axis=1) \
            if dist.shapes else np.zeros((len(state.models) + 1, 0), dtype=np.bool_)
        return cls(
            cpu=np.array([s.cpu_milli for s in dist.shapes], dtype=np.int64),
            milli=np.array([s.gpu_milli for s in dist.shapes], dtype=np.int64),
            count=np.array([s.gpu_count for s in dist.shapes], dtype=np.int64),
            allowed=allowed,
            weight=np.array([w if s.gpu_count else 0.0 for s, w in
                             zip(dist.shapes, dist.weights, strict=True)], dtype=np.float64),
        )


def usable_milli(state: ClusterState, dist: Compiled, idx: IntArray) -> FloatArray:
    """Expected free milli a typical request can use on each node (free minus fragmentation)."""
    gpu = state.gpu_free[idx]
    ok = dist.allowed[state.gpu_model[idx]] & state.gpu_ok[idx][..., None]  # (n, D, T)
    ge = ok & (gpu[..., None] >= dist.milli)
    host = (ge.sum(axis=1) >= dist.count) & (state.cpu_free[idx][:, None] >= dist.cpu)
    sum_ge = (gpu[..., None] * ge).sum(axis=1)
    return np.asarray((host * sum_ge) @ dist.weight, dtype=np.float64)


def fragmentation(state: ClusterState, dist: Compiled, idx: IntArray) -> FloatArray:
    """Expected unusable free GPU milli per node."""
    return np.asarray(state.gpu_free[idx].sum(axis=1) - usable_milli(state, dist, idx),
                      dtype=np.float64)


def usable_after_whole(state: ClusterState, dist: Compiled, idx: IntArray,
                       shape: Shape) -> FloatArray:
    """``usable_milli`` after placing a CPU-only or whole-GPU ``shape`` on each node.

    Whole GPUs come from the first fully free usable devices, as the claim does.
    """
    gpu = state.gpu_free[idx].copy()
    if shape.gpu_count:
        whole = state.usable(shape, idx) & (gpu == 1000)
        take = whole & (np.cumsum(whole, axis=1) <= shape.gpu_count)
        gpu[take] = 0
    cpu = state.cpu_free[idx] - shape.cpu_milli
    ok = dist.allowed[state.gpu_model[idx]] & state.gpu_ok[idx][..., None]
    ge = ok & (gpu[..., None] >= dist.milli)
    host = (ge.sum(axis=1) >= dist.count) & (cpu[:, None] >= dist.cpu)
    return np.asarray((host * (gpu[..., None] * ge).sum(axis=1)) @ dist.weight,
                      dtype=np.float64)


def usable_after_fraction(state: ClusterState, dist: Compiled, idx: IntArray,
                          shape: Shape) -> tuple[FloatArray, BoolArray]:
    """``usable_milli`` after putting a fractional ``shape`` on device j, for every (node, j).

    Returns (n, D) values and the (n, D) mask of devices that can take the fraction. Only
    device j changes, so the sums are updated rather than recomputed.
    """
    gpu = state.gpu_free[idx]
    fits = state.usable(shape, idx) & (gpu >= shape.gpu_milli)
    after = gpu - shape.gpu_milli
    ok = dist.allowed[state.gpu_model[idx]] & state.gpu_ok[idx][..., None]  # (n, D, T)
    ge = ok & (gpu[..., None] >= dist.milli)
    ge_after = ok & (after[..., None] >= dist.milli)
    count = ge.sum(axis=1)[:, None, :] - ge + ge_after  # (n, D, T)
    sum_ge = ((gpu[..., None] * ge).sum(axis=1)[:, None, :]
              - gpu[..., None] * ge + after[..., None] * ge_after)
    cpu = state.cpu_free[idx] - shape.cpu_milli
    host = (count >= dist.count) & (cpu[:, None, None] >= dist.cpu)
    return np.asarray((host * sum_ge) @ dist.weight, dtype=np.float64), fits


def cpu_per_gpu_milli(dist: Compiled) -> FloatArray:
    """Per model code, the CPU milli that typical GPU requests take per GPU milli.

    Weighted over the typical requests that may use the model, so a model that only
    CPU-hungry requests are allowed on gets a higher ratio. Model codes that no typical GPU
    request may use (and the padding code) get the overall ratio. 0 where no typical request
    wants a GPU.
    """
    gpu = dist.weight * dist.milli * dist.count  # (T,); CPU-only shapes weigh 0
    cpu = dist.weight * dist.cpu
    overall = float(cpu.sum() / gpu.sum()) if gpu.sum() > 0 else 0.0
    allowed = dist.allowed.astype(np.float64)  # (models + 1, T)
    num, den = allowed @ cpu, allowed @ gpu
    return np.asarray(np.where(den > 0, num / np.where(den > 0, den, 1.0), overall),
                      dtype=np.float64)


def stranded_milli(gpu_free: FloatArray, cpu_free: FloatArray, ratio: FloatArray) -> FloatArray:
    """Free GPU milli that the node's free CPU cannot feed at ``ratio`` CPU milli per GPU milli
    (typical requests' proportions): ``max(0, gpu_free - cpu_free / ratio)``, 0 where the
    ratio is 0. Shapes broadcast."""
    safe = np.where(ratio > 0, ratio, 1.0)
    return np.asarray(np.where(ratio > 0, np.maximum(0.0, gpu_free - cpu_free / safe), 0.0),
                      dtype=np.float64)
