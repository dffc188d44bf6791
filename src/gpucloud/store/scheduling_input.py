"""What one scheduling pass reads: the fleet, the work holding it, and the head of the queue,
as the pure scheduling core's snapshot types (``gpucloud.scheduling.model``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gpucloud.core.jobspec import JobSpec
from gpucloud.core.states import HOLDS_ALLOCATION, JobState
from gpucloud.scheduling.decisions import Running
from gpucloud.scheduling.filters import never_fits
from gpucloud.scheduling.model import (
    MILLI,
    ClusterSnapshot,
    Device,
    Node,
    Placement,
    Topology,
    Workload,
)
from gpucloud.store.assets import fleet_places, with_register_topology
from gpucloud.store.baremetal import unschedulable_nodes
from gpucloud.store.models import Allocation, DeviceClaim, Job
from gpucloud.store.models import Device as DeviceRow
from gpucloud.store.models import Node as NodeRow
from gpucloud.store.node_cache import dataset_preferences

# Node labels that place a node in the fabric: from the asset register for nodes matched to a
# server there (store.assets), else as the engine labels them.
TOPOLOGY_LABELS = ("nvlink_island", "leaf_switch", "rack")


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    members: tuple[Workload, ...]  # one per node; a multi-node job's members form a gang
    reason: str  # why it waits, as last written (to write only what changed)
    message: str


def member_id(job_id: str, rank: int, nodes: int) -> str:
    """The scheduling core's id of one node's share of a job: the job id for a single node."""
    return job_id if nodes == 1 else f"{job_id}#{rank}"


def job_of(workload_id: str) -> str:
    return workload_id.split("#", 1)[0]


def rank_of(workload_id: str) -> int:
    _, _, rank = workload_id.partition("#")
    return int(rank) if rank else 0


@dataclass(frozen=True)
class SchedulingInput:
    snapshot: ClusterSnapshot
    running: tuple[Running, ...]
    queue: tuple[QueuedJob, ...]
    device_ids: dict[tuple[str, int], str]  # (node, device index) -> device id
    # The dataset-affinity scorer's input: workload id -> dataset versions it reads, and
    # node -> versions in its cache (store/node_cache.py).
    wanted_datasets: dict[str, frozenset[str]] = field(default_factory=dict)
    cached_datasets: dict[str, frozenset[str]] = field(default_factory=dict)

    def decision_key(self) -> tuple[object, ...]:
        """Everything the plan depends on but the clock: equal keys give the same plan, apart
        from what backfill derives from running jobs' remaining time."""
        return (
            self.snapshot,
            tuple((r.workload, r.placement) for r in self.running),
            tuple(q.members for q in self.queue),
            self.wanted_datasets,
            self.cached_datasets,
        )


def scheduling_input(session: Session, window: int, now: datetime) -> SchedulingInput | None:
    """None when nothing is queued: an idle pass reads one small query."""
    queue = _queue(session, window, now)
    if not queue:
        return None
    claimed = set(session.scalars(select(DeviceClaim.device_id)))
    cpu_used: dict[str, int] = defaultdict(int)
    memory_used: dict[str, int] = defaultdict(int)
    running = []
    held = [s.value for s in HOLDS_ALLOCATION]
    index_of: dict[str, int] = {}
    nodes, device_ids = [], {}
    rows = list(session.scalars(select(NodeRow).order_by(NodeRow.id)))
    engine_labels = {r.id: {str(k): str(v) for k, v in (r.labels or {}).items()} for r in rows}
    places = fleet_places(session, engine_labels)  # the asset register places nodes
    leased_whole = unschedulable_nodes(session, places)  # bare metal held, wiped or broken
    for row in rows:
        labels = with_register_topology(engine_labels[row.id], places, row.id)
        devices = []
        for d in sorted(row.devices, key=_index):
            device_ids[(row.id, d.index)] = d.id
            index_of[d.id] = d.index
            devices.append(
                Device(d.index, d.model, 0 if d.id in claimed else MILLI, d.schedulable)
            )
        nodes.append((row, labels, tuple(devices)))
    for allocation, job in session.execute(
        select(Allocation, Job)
        .join(Job, Job.id == Allocation.job_id)
        .where(Allocation.active, Job.state.in_(held))
    ):
        cpu_used[allocation.node_id] += allocation.cpu_milli
        memory_used[allocation.node_id] += allocation.memory_mib
        indices = tuple(index_of[d] for d in allocation.device_ids if d in index_of)
        member = _members(job)[min(allocation.replica, job.nodes - 1)]
        running.append(Running(
            member,
            Placement(member.id, allocation.node_id, indices, MILLI, allocation.cpu_milli,
                      allocation.memory_mib),
            _remaining(job, now),
        ))
    snapshot = ClusterSnapshot(tuple(
        Node(
            name=row.id,
            cpu_milli=row.cpu_milli,
            memory_mib=row.memory_mib,
            devices=devices,
            cpu_free=row.cpu_milli - cpu_used[row.id],
            memory_free=row.memory_mib - memory_used[row.id],
            # The core knows one kind of "do not place here"; quarantine is one of them.
            healthy=row.healthy and row.quarantined_at is None and row.id not in leased_whole,
            labels=tuple(sorted(labels.items())),
            topology=Topology(*(labels.get(key, "") for key in TOPOLOGY_LABELS)),
        )
        for row, labels, devices in nodes
    ))
    wanted, cached = dataset_preferences(session, queue)
    return SchedulingInput(snapshot, tuple(running), tuple(queue), device_ids, wanted, cached)


_QUEUE_COLUMNS = (
    Job.id, Job.nodes, Job.cpu_milli, Job.memory_mib, Job.gpus, Job.gpu_type, Job.priority,
    Job.tenant_id, Job.max_duration_s,
)


def _queue(session: Session, window: int, now: datetime) -> list[QueuedJob]:
    """The head of the queue in submission order (the scheduler orders by priority and share),
    without jobs still backing off after a fault. Only the columns it needs: this runs every
    pass, and whole ORM rows cost several times more."""
    rows = session.execute(
        select(*_QUEUE_COLUMNS, Job.reason, Job.message)
        .where(Job.state == JobState.QUEUED, or_(Job.not_before.is_(None), Job.not_before <= now))
        .order_by(Job.priority.desc(), Job.id)
        .limit(window)
    )
    return [QueuedJob(row.id, _members(row), row.reason, row.message) for row in rows]


def workload_of_spec(spec: JobSpec) -> Workload:
    """One node's share of a job not yet submitted (for submit checks and dry runs)."""
    return Workload(
        id="(new)",
        cpu_milli=spec.cpu_milli,
        memory_mib=spec.memory_mib,
        gpu_count=spec.gpus,
        gpu_milli=MILLI if spec.gpus else 0,
        gpu_models=frozenset({spec.gpu_type}) if spec.gpu_type and spec.gpus else None,
        time_limit_s=None if spec.max_duration_s is None else float(spec.max_duration_s),
    )


def never_fits_job(snapshot: ClusterSnapshot, spec: JobSpec) -> str | None:
    """Why the fleet could never hold the job, even empty; None if it could. A multi-node job
    needs ``nodes`` distinct nodes that could each hold one share."""
    workload = workload_of_spec(spec)
    reason = never_fits(snapshot, workload)
    if reason is not None or spec.nodes == 1:
        return reason
    able = sum(1 for n in snapshot.nodes if never_fits(ClusterSnapshot((n,)), workload) is None)
    if able >= spec.nodes:
        return None
    return f"{able} of {len(snapshot.nodes)} nodes could hold one node's share, {spec.nodes} needed"


def fleet(session: Session) -> ClusterSnapshot:
    """Every node at full capacity: what could ever run, whatever runs now."""
    return ClusterSnapshot(tuple(
        Node(
            name=row.id,
            cpu_milli=row.cpu_milli,
            memory_mib=row.memory_mib,
            devices=tuple(Device(d.index, d.model) for d in sorted(row.devices, key=_index)),
        )
        for row in session.scalars(select(NodeRow).order_by(NodeRow.id))
    ))


def _index(device: DeviceRow) -> int:
    return device.index


class _JobColumns(Protocol):
    """What a workload is built from: a Job row, or a row of ``_QUEUE_COLUMNS``."""

    id: str
    nodes: int
    cpu_milli: int
    memory_mib: int
    gpus: int
    gpu_type: str | None
    priority: int
    tenant_id: str
    max_duration_s: int | None


def _members(job: _JobColumns) -> tuple[Workload, ...]:
    gang = job.id if job.nodes > 1 else None
    return tuple(
        Workload(
            id=member_id(job.id, rank, job.nodes),
            cpu_milli=job.cpu_milli,
            memory_mib=job.memory_mib,
            gpu_count=job.gpus,
            gpu_milli=MILLI if job.gpus else 0,
            gpu_models=frozenset({job.gpu_type}) if job.gpu_type and job.gpus else None,
            priority=job.priority,
            tenant=job.tenant_id,
            gang_id=gang,
            gang_size=job.nodes,
            one_per_node=gang is not None,
            time_limit_s=None if job.max_duration_s is None else float(job.max_duration_s),
        )
        for rank in range(job.nodes)
    )


def _remaining(job: Job, now: datetime) -> float | None:
    """Until the job's max duration; None when it has none (it may run forever)."""
    if job.max_duration_s is None:
        return None
    started = job.started_at or now
    return max(0.0, job.max_duration_s - (now - started).total_seconds())
