"""EASY backfill: one reservation for the first blocked job, and a check that nothing placed
after it delays it.

Running jobs end by their time limits at the latest, so the blocked job's start is bounded by
releasing running jobs in order of remaining time until it fits (the "shadow time"). A later job
may then start now only if, at the shadow time, the blocked job still fits: true when the later
job ends first (its time limit is within the shadow time) or leaves the room the blocked job
needs. Jobs without a known end are assumed to run forever. Everything runs on copies of the
state; the caller's state is never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from gpucloud.scheduling.decisions import Running
from gpucloud.scheduling.state import ClusterState

Fits = Callable[[ClusterState], bool]  # may claim on the state it is given (a throwaway copy)


def shadow_time(state: ClusterState, running: Sequence[Running], fits: Fits) -> float | None:
    """Seconds until the blocked job fits as running jobs end, or None if it never does (too
    big for the cluster, or held back by jobs without a known end). Binary search over the end
    times: fitting only gets easier as more jobs end."""
    ends = sorted({r.remaining_s for r in running if r.remaining_s is not None})
    if not ends or not still_fits_at(state, running, ends[-1], fits):
        return None
    lo, hi = 0, len(ends) - 1  # ends[hi] fits
    while lo < hi:
        mid = (lo + hi) // 2
        if still_fits_at(state, running, ends[mid], fits):
            hi = mid
        else:
            lo = mid + 1
    return ends[hi]


def still_fits_at(state: ClusterState, running: Sequence[Running], at_s: float,
                  fits: Fits) -> bool:
    """Does the blocked job fit at ``at_s``, given what holds resources now (``state``)?"""
    trial = copy.deepcopy(state)
    for r in running:
        if r.remaining_s is not None and r.remaining_s <= at_s:
            trial.release(r.placement)
    return fits(trial)
