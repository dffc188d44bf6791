"""One scheduling pass: snapshot, running work and queue in, a SchedulePlan out (pure).

Order: priority class, then DRF among tenants (``fairshare``). Each unit (a workload, or a whole
gang) is checked against its tenant's quota (``quota``), then placed: singles by the Placer's
scorer, gangs all-or-nothing in the tightest topology domain (``gang``). A single that does not
fit may preempt, losing the least work (``preemption``). The first unit that still cannot start
gets a reservation, and no later placement may delay it (``backfill``).
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from gpucloud.scheduling.backfill import Fits, shadow_time, still_fits_at
from gpucloud.scheduling.decisions import (
    Preemption,
    PreemptReason,
    Reservation,
    Running,
    SchedulePlan,
    Waiting,
    WaitReason,
)
from gpucloud.scheduling.engine import Placer
from gpucloud.scheduling.fairshare import Shares, Unit, capacity, fair_order
from gpucloud.scheduling.filters import DEFAULT_FILTERS, Filter, feasible
from gpucloud.scheduling.gang import LEVEL_WORDS, Domains, allowed_levels, place_gang
from gpucloud.scheduling.model import ClusterSnapshot, Placement, Workload
from gpucloud.scheduling.policies import Scorer
from gpucloud.scheduling.preemption import VictimSet, choose_victims, victim_units
from gpucloud.scheduling.quota import QuotaLedger
from gpucloud.scheduling.state import ClusterState

Members = tuple[Workload, ...]  # one workload, or every member of a gang
_PREPARE_AT = 256  # queue length from which the placer scores every queued shape up front


@dataclass(frozen=True)
class SchedulerConfig:
    quotas: Mapping[str, int] | None = None  # tenant -> guaranteed milli-GPU; None: no quotas
    borrowing: bool = True  # may a tenant use other tenants' idle quota
    preemption: bool = True
    backfill: bool = True
    gang_max_level: str = "leaf_switch"  # coarsest domain a gang may span unless it says
    tenant_weights: Mapping[str, float] = field(default_factory=dict)  # DRF weights (default 1)
    unknown_loss_s: float = 7 * 24 * 3600.0  # loss charged for a victim with no checkpoint
    filters: tuple[Filter, ...] = DEFAULT_FILTERS


def _units(queue: Sequence[Workload]) -> tuple[list[Unit[Members]], list[Waiting]]:
    units: list[Unit[Members]] = []
    waiting: list[Waiting] = []
    gangs: dict[str, list[tuple[int, Workload]]] = {}
    for pos, w in enumerate(queue):
        if w.gang_id is None:
            units.append(Unit((w,), w.tenant, w.priority, pos))
        else:
            gangs.setdefault(w.gang_id, []).append((pos, w))
    for gang, entries in gangs.items():
        members = tuple(w for _, w in entries)
        size = max(w.gang_size for w in members)
        if len(members) != size:
            waiting += [Waiting(w.id, WaitReason.GANG_INCOMPLETE,
                                f"gang {gang}: {len(members)} of {size} members queued")
                        for w in members]
        else:
            units.append(Unit(members, members[0].tenant, max(w.priority for w in members),
                              entries[0][0]))
    return units, waiting


def _gpu(members: Members) -> int:
    return sum(w.total_gpu_milli for w in members)


def _as_running(members: Members, placed: Sequence[Placement]) -> list[Running]:
    """Newly placed work holds its resources until its time limit (forever if it has none)."""
    by_id = {w.id: w for w in members}
    return [Running(by_id[p.workload_id], p, by_id[p.workload_id].time_limit_s) for p in placed]


class _Pass:
    """The mutable state of one pass; nothing here outlives ``schedule``."""

    def __init__(self, snapshot: ClusterSnapshot, scorer: Scorer, config: SchedulerConfig,
                 running: Sequence[Running]) -> None:
        self.config = config
        self.scorer = scorer
        self.state = ClusterState.from_snapshot(snapshot)
        self.placer = Placer(self.state, scorer, config.filters)
        self.domains = Domains.build(snapshot.nodes)
        self.shares = Shares(capacity(snapshot.nodes), config.tenant_weights)
        self.ledger = (None if config.quotas is None
                       else QuotaLedger(config.quotas, borrowing=config.borrowing))
        # What holds resources and has a known end: the rest never frees room for a
        # reservation, so backfill need not see it. With none, no reservation can be computed
        # and a blocked unit skips the search.
        self.live = [r for r in running if r.remaining_s is not None]
        self.preemptible = list(running)  # only what ran before this pass
        for r in running:
            self._charge(r.workload, 1)
        self.placements: list[Placement] = []
        self.preemptions: list[Preemption] = []
        self.waiting: list[Waiting] = []
        self.reservation: Reservation | None = None
        self.reserved_fits: Fits | None = None
        self.gang_levels: dict[str, str] = {}

    def _charge(self, w: Workload, sign: int) -> None:
        self.shares.charge(w.tenant, w, sign)
        if self.ledger is not None:
            self.ledger.charge(w.tenant, sign * w.total_gpu_milli)

    def _level(self, members: Members) -> str:
        req = members[0].topology
        return req.require if req is not None and req.require else self.config.gang_max_level

    def _fits(self, members: Members) -> Fits:
        """Could the unit be placed on a given state? (For reservations; may claim on it.)"""
        if members[0].gang_id is None:
            shape, filters = members[0].shape, self.config.filters
            return lambda st: bool(feasible(st, shape, np.arange(len(st)), filters).any())
        level = self._level(members)
        return lambda st: place_gang(st, self.scorer, members, self.domains, level,
                                     self.config.filters) is not None

    def _keeps_reservation(self, state: ClusterState, live: Sequence[Running]) -> bool:
        if self.reservation is None or self.reserved_fits is None:
            return True
        return still_fits_at(state, live, self.reservation.start_in_s, self.reserved_fits)

    def _place(self, members: Members) -> list[Placement] | None:
        if members[0].gang_id is None:
            p = self.placer.place(members[0])
            return None if p is None else [p]
        got = place_gang(self.state, self.scorer, members, self.domains, self._level(members),
                         self.config.filters, self.placer)
        if got is None:
            return None
        placed, level = got
        self.gang_levels[members[0].gang_id] = level
        return placed

    def _commit(self, members: Members, placed: list[Placement]) -> None:
        self.placements += placed
        if any(w.time_limit_s is not None for w in members):
            self.live += [r for r in _as_running(members, placed) if r.remaining_s is not None]
        for w in members:
            self._charge(w, 1)

    def _victims(self, w: Workload) -> tuple[VictimSet, dict[str, PreemptReason]] | None:
        """Who may make room for ``w``: strictly lower priority (of its own tenant, or of a
        tenant borrowing quota); with quotas, a tenant within its quota also reclaims borrowed
        room from equal or lower priority. Guaranteed quota of others is never taken."""
        ledger = self.ledger
        reclaim = ledger is not None and ledger.within(w.tenant, w.total_gpu_milli)
        eligible: list[Running] = []
        reasons: dict[str, PreemptReason] = {}
        for r in self.preemptible:
            v = r.workload
            other_borrows = (ledger is not None and v.tenant != w.tenant
                             and ledger.borrowed(v.tenant) > 0)
            if v.priority < w.priority and (ledger is None or v.tenant == w.tenant
                                            or other_borrows):
                reasons[v.id] = PreemptReason.PRIORITY
            elif reclaim and other_borrows and v.priority <= w.priority:
                reasons[v.id] = PreemptReason.QUOTA_RECLAIM
            else:
                continue
            eligible.append(r)
        if not eligible:
            return None
        budget = ({} if ledger is None else
                  {r.workload.tenant: ledger.borrowed(r.workload.tenant) for r in eligible
                   if r.workload.tenant != w.tenant})
        choice = choose_victims(self.state, w.shape, victim_units(eligible, self.preemptible),
                                self.config.unknown_loss_s, budget)
        return None if choice is None else (choice, reasons)

    def _preempt(self, w: Workload) -> WaitReason | None:
        """Place ``w`` by evicting the cheapest victims; else why not (no victims would do, or
        the eviction would still delay the reservation)."""
        found = self._victims(w)
        if found is None:
            return WaitReason.NO_FIT
        choice, reasons = found
        trial = copy.deepcopy(self.state)
        for v in choice.victims:
            trial.release(v.placement)
        p = trial.claim(choice.node, w, trial.choose_devices(choice.node, w.shape))
        gone = {v.workload.id for v in choice.victims}
        live = [r for r in self.live if r.workload.id not in gone]
        if not self._keeps_reservation(trial, [*live, Running(w, p, w.time_limit_s)]):
            return WaitReason.RESERVED
        for v in choice.victims:  # commit on the real state, in the same order as the trial
            self.state.release(v.placement)
            self._charge(v.workload, -1)
            lost = v.workload.seconds_since_checkpoint
            why = ("reclaims quota its tenant lent" if reasons[v.workload.id]
                   is PreemptReason.QUOTA_RECLAIM else f"has higher priority ({w.priority} > "
                   f"{v.workload.priority})")
            self.preemptions.append(Preemption(
                v.workload.id, v.placement.node, reasons[v.workload.id], w.id,
                self.config.unknown_loss_s if lost is None else lost,
                f"preempted for {w.id}, which {why}"))
        self.live = live
        self.preemptible = [r for r in self.preemptible if r.workload.id not in gone]
        self._commit((w,), [self.state.claim(choice.node, w, p.devices)])
        return None

    def _wait_message(self, members: Members) -> str:
        if members[0].gang_id is None:
            return self.placer.explain(members[0])
        words = [LEVEL_WORDS[lv] for lv in allowed_levels(self._level(members))]
        where = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
        return (f"gang {members[0].gang_id} ({len(members)} members, {_gpu(members)} milli-GPU) "
                f"fits in no single {where} now")

    def _reserve(self, members: Members) -> str:
        if not self.live:
            return ""
        fits = self._fits(members)
        start = shadow_time(self.state, self.live, fits)
        if start is None:
            return ""
        ids = tuple(w.id for w in members)
        self.reservation = Reservation(ids, start, f"{', '.join(ids)} can start in "
                                       f"{start:.0f} s; later jobs may only backfill around it")
        self.reserved_fits = fits
        return f"; reserved to start in {start:.0f} s"

    def run(self, units: Sequence[Unit[Members]]) -> None:
        for unit in fair_order(units, self.shares):
            self.step(unit.item)

    def step(self, members: Members) -> None:
        if self.ledger is not None:
            tenant, milli = members[0].tenant, _gpu(members)
            if not self.ledger.admits(tenant, milli):
                self._wait(members, WaitReason.OVER_QUOTA, self.ledger.explain(tenant, milli))
                return
        placed = self._place(members)
        if placed is not None:
            if self.reservation is None or self._keeps_reservation(
                    self.state, [*self.live, *_as_running(members, placed)]):
                self._commit(members, placed)
                return
            for p in placed:
                self.state.release(p)
            self.gang_levels.pop(members[0].gang_id or "", None)
            self._wait_reserved(members)
            return
        if self.config.preemption and members[0].gang_id is None:
            why = self._preempt(members[0])
            if why is None:
                return
            if why is WaitReason.RESERVED:
                self._wait_reserved(members)
                return
        message = self._wait_message(members)
        if self.config.backfill and self.reservation is None:
            message += self._reserve(members)
        reason = WaitReason.NO_FIT if members[0].gang_id is None else WaitReason.GANG_NO_DOMAIN
        self._wait(members, reason, message)

    def _wait_reserved(self, members: Members) -> None:
        assert self.reservation is not None
        self._wait(members, WaitReason.RESERVED,
                   f"would delay {', '.join(self.reservation.workload_ids)}, reserved to start "
                   f"in {self.reservation.start_in_s:.0f} s")

    def _wait(self, members: Members, reason: WaitReason, message: str) -> None:
        self.waiting += [Waiting(w.id, reason, message) for w in members]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A pass makes a few objects per decision (placements, reasons) and no reference cycles;
    with the collector on, its full sweeps over the growing heap took about a tenth of a
    50,000-workload pass. It resumes when the pass ends (if it was on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def schedule(snapshot: ClusterSnapshot, queue: Sequence[Workload], scorer: Scorer,
             config: SchedulerConfig | None = None,
             running: Sequence[Running] = ()) -> SchedulePlan:
    """Decide, for one instant, what starts, what is preempted and why the rest waits.

    ``snapshot`` must already account for ``running`` (their resources are not free); running
    workloads are what preemption may evict and what backfill expects to end.
    """
    config = config or SchedulerConfig()
    allowed_levels(config.gang_max_level)  # fail early on a misspelt level
    with _collector_paused():
        units, waiting = _units(queue)
        run = _Pass(snapshot, scorer, config, running)
        if len(queue) > _PREPARE_AT:
            run.placer.prepare(w.shape for w in queue)
        run.waiting += waiting
        run.run(units)
    return SchedulePlan(tuple(run.placements), tuple(run.preemptions), tuple(run.waiting),
                        run.reservation, run.gang_levels)
