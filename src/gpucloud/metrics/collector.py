"""The ``/metrics`` collector: per-GPU series under dcgm-exporter's names and the platform's
own, read from the database.

A scrape costs the size of the fleet plus what happened since the last scrape, never the
whole history: gauges count only what is live (active jobs, nodes, devices, a handful of revenue
accounts), and counters advance from cursors into the append-only ``events`` and ``faults``
tables. Counters start at zero when the process starts, as Prometheus expects of counters (its
``rate()`` and ``increase()`` handle the reset).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpucloud.billing.ledger import AccountKind
from gpucloud.core.baremetal import BareMetalState
from gpucloud.core.faults import SignalKind
from gpucloud.core.states import TERMINAL, JobState, Reason
from gpucloud.metrics.gpu import GpuSample, NvmlReader, simulated_sample
from gpucloud.store.db import Database
from gpucloud.store.models import Allocation, Device, DeviceClaim, Event, Fault, Job, LedgerAccount
from gpucloud.store.models import Node as NodeRow
from gpucloud.store.models_fleet import BareMetalServer

# dcgm-exporter's labels, so that its dashboards work unchanged, then gpucloud's own.
GPU_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname",
              "node", "job", "tenant", "source")
GPU_SERIES = (
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "util_pct"),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "fb_used_mib"),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "temp_c"),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "power_w"),
)
PLACEMENT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
ACTIVE_STATES = [s.value for s in JobState if s not in TERMINAL]


@dataclass
class _Tally:
    """What the counters have seen since the process started."""

    transitions: Counter[str] = field(default_factory=Counter)  # target state -> count
    restarts: int = 0
    faults: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, action)
    placement_buckets: list[int] = field(default_factory=lambda: [0] * len(PLACEMENT_BUCKETS))
    placement_count: int = 0
    placement_sum: float = 0.0
    last_xid: dict[tuple[str, int], int] = field(default_factory=dict)  # (node, gpu) -> Xid


class FleetCollector(Collector):
    def __init__(self, db: Database, nvml: Any = None) -> None:
        self.db = db
        self._nvml = NvmlReader(nvml) if nvml is not None else None
        self._lock = threading.Lock()
        self._tally = _Tally()
        self._event_cursor: int | None = None
        self._fault_cursor: int | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock, self.db.read() as session:
            self._advance(session)
            yield from self._gpu_metrics(session)
            yield from self._platform_gauges(session)
            yield from self._counters()

    # -- counters: from cursors into append-only tables ---------------------------------------

    def _advance(self, session: Session) -> None:
        tally = self._tally
        if self._event_cursor is None:  # first scrape: start here, and learn the last Xids
            self._event_cursor = session.scalar(select(func.max(Event.id))) or 0
            self._fault_cursor = session.scalar(select(func.max(Fault.id))) or 0
            last = (select(Fault.node_id, Fault.device_index, func.max(Fault.id))
                    .where(Fault.kind == SignalKind.XID.value, Fault.device_index.is_not(None))
                    .group_by(Fault.node_id, Fault.device_index)).subquery()
            for node, index, code in session.execute(
                select(last.c.node_id, last.c.device_index, Fault.code)
                .join(Fault, Fault.id == last.c[2])
            ):
                tally.last_xid[(node, index)] = int(code or 0)
            return
        events = session.execute(
            select(Event.id, Event.after, Event.reason, Event.at, Job.created_at)
            .outerjoin(Job, Job.id == Event.object_id)
            .where(Event.id > self._event_cursor, Event.kind == "job.state")
            .order_by(Event.id)
        ).all()
        newest = session.scalar(select(func.max(Event.id))) or self._event_cursor
        for _, after, reason, at, created in events:
            tally.transitions[after or ""] += 1
            if after == JobState.QUEUED.value and reason == Reason.RESTARTING.value:
                tally.restarts += 1
            if after == JobState.SCHEDULED.value and created is not None:
                self._observe_placement(max(0.0, (at - created).total_seconds()))
        self._event_cursor = max(newest, self._event_cursor)
        for fault_id, kind, action, node, index, code in session.execute(
            select(Fault.id, Fault.kind, Fault.action, Fault.node_id, Fault.device_index,
                   Fault.code)
            .where(Fault.id > (self._fault_cursor or 0)).order_by(Fault.id)
        ):
            tally.faults[(kind, action)] += 1
            if kind == SignalKind.XID.value and index is not None:
                tally.last_xid[(node, index)] = int(code or 0)
            self._fault_cursor = fault_id

    def _observe_placement(self, seconds: float) -> None:
        tally = self._tally
        tally.placement_count += 1
        tally.placement_sum += seconds
        for i, bound in enumerate(PLACEMENT_BUCKETS):
            if seconds <= bound:
                tally.placement_buckets[i] += 1

    def _counters(self) -> Iterator[Metric]:
        tally = self._tally
        moves = CounterMetricFamily("gpucloud_job_transitions", "Jobs that entered a state.",
                                    labels=["state"])
        for state in JobState:
            moves.add_metric([state.value], tally.transitions[state.value])
        yield moves
        yield CounterMetricFamily("gpucloud_placements", "Jobs placed on nodes (rate() of it "
                                  "is placements per second).",
                                  value=tally.transitions[JobState.SCHEDULED.value])
        yield CounterMetricFamily("gpucloud_restarts", "Jobs requeued after a platform fault "
                                  "to resume from their checkpoint.", value=tally.restarts)
        faults = CounterMetricFamily("gpucloud_faults", "Health signals the engines reported, "
                                     "by kind and the action taken.", labels=["kind", "action"])
        for (kind, action), count in sorted(tally.faults.items()):
            faults.add_metric([kind, action], count)
        yield faults
        buckets = [(_le(b), c) for b, c in zip(PLACEMENT_BUCKETS, tally.placement_buckets,
                                               strict=True)]
        buckets.append(("+Inf", tally.placement_count))
        yield HistogramMetricFamily("gpucloud_time_to_placement_seconds",
                                    "From submission to placement, per placement.",
                                    buckets=buckets, sum_value=tally.placement_sum)

    # -- gauges: what is live now --------------------------------------------------------------

    def _platform_gauges(self, session: Session) -> Iterator[Metric]:
        counts = dict(session.execute(
            select(Job.state, func.count()).where(Job.state.in_(ACTIVE_STATES))
            .group_by(Job.state)
        ).all())
        jobs = GaugeMetricFamily("gpucloud_jobs", "Jobs not yet ended, by state.",
                                 labels=["state"])
        for state in ACTIVE_STATES:
            jobs.add_metric([state], counts.get(JobState(state), 0))
        yield jobs
        yield GaugeMetricFamily("gpucloud_queue_length", "Jobs admitted and waiting for "
                                "capacity (QUEUED).", value=counts.get(JobState.QUEUED, 0))
        nodes = GaugeMetricFamily("gpucloud_nodes", "Nodes by condition.", labels=["condition"])
        tally: Counter[str] = Counter()
        for healthy, quarantined in session.execute(
            select(NodeRow.healthy, NodeRow.quarantined_at.is_not(None))
        ):
            tally["quarantined" if quarantined else "healthy" if healthy else "unhealthy"] += 1
        for condition in ("healthy", "unhealthy", "quarantined"):
            nodes.add_metric([condition], tally[condition])
        yield nodes
        servers = GaugeMetricFamily("gpucloud_baremetal_servers", "Bare-metal servers by "
                                    "lifecycle state.", labels=["state"])
        held = Counter(session.scalars(select(BareMetalServer.state)))
        for state in BareMetalState:
            servers.add_metric([state.value], held[state])
        yield servers
        revenue = CounterMetricFamily("gpucloud_revenue_minor", "Money earned, in minor units "
                                      "of the currency (cents), since the platform began.",
                                      labels=["currency"])
        for unit, balance in session.execute(
            select(LedgerAccount.unit, LedgerAccount.balance)
            .where(LedgerAccount.kind == AccountKind.REVENUE.value)
        ):
            revenue.add_metric([unit], balance)
        yield revenue

    def _gpu_metrics(self, session: Session) -> Iterator[Metric]:
        holders: dict[str, tuple[str, str, str]] = {}  # device -> (job, tenant, state)
        for device_id, job_id, tenant, held_by in session.execute(
            select(DeviceClaim.device_id, Job.id, Job.tenant_id, Job.state)
            .join(Allocation, Allocation.id == DeviceClaim.allocation_id)
            .join(Job, Job.id == Allocation.job_id)
        ):
            holders[device_id] = (job_id, tenant, JobState(held_by).value)
        devices = list(session.scalars(select(Device).order_by(Device.node_id, Device.index)))
        real = [d.uuid for d in devices if not d.simulated and d.uuid]
        measured = self._nvml.samples(real) if self._nvml is not None and real else {}
        families = {name: GaugeMetricFamily(name, doc, labels=GPU_LABELS)
                    for name, doc, _ in GPU_SERIES}
        xid = GaugeMetricFamily("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error "
                                "encountered.", labels=GPU_LABELS)
        for d in devices:
            job, tenant, state = holders.get(d.id, ("", "", ""))
            sample: GpuSample | None
            if d.simulated:
                sample = simulated_sample(d.model, d.memory_mib, state == JobState.RUNNING.value)
            else:
                sample = measured.get(d.uuid)  # None: a remote or silent GPU, left out
            labels = [str(d.index), d.uuid, d.pci_bus_id, f"nvidia{d.index}", d.model,
                      d.node_id, d.node_id, job, tenant,
                      sample.source if sample is not None else "none"]
            xid.add_metric(labels, self._tally.last_xid.get((d.node_id, d.index), 0))
            if sample is None:
                continue
            for name, _, attr in GPU_SERIES:
                families[name].add_metric(labels, getattr(sample, attr))
        yield from families.values()
        yield xid


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"
