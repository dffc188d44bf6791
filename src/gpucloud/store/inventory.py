"""The fleet as the database knows it: nodes and devices from engine reports, and snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpucloud.core.cluster import ClusterSnapshot, DeviceView, NodeView, Request, Workload
from gpucloud.core.jobspec import JobSpec
from gpucloud.core.states import JobState
from gpucloud.engines.base import NodeReport
from gpucloud.store.models import Allocation, Device, DeviceClaim, Job, Node
from gpucloud.store.transitions import record_event


def device_id(node_id: str, index: int) -> str:
    return f"{node_id}/gpu{index}"


def sync_nodes(
    session: Session, engine_name: str, reports: Sequence[NodeReport], now: datetime
) -> None:
    """Upsert what the engine reports; a change of health is an event."""
    for report in reports:
        node = session.get(Node, report.id)
        if node is None:
            node = Node(
                id=report.id,
                engine=engine_name,
                created_at=now,
                healthy=report.healthy,
                health_message=report.message,
                last_seen_at=now,
                labels={},
                cpu_milli=report.cpu_milli,
                memory_mib=report.memory_mib,
            )
            session.add(node)
            record_event(
                session,
                at=now,
                object_kind="node",
                object_id=node.id,
                kind="node.registered",
                tenant_id=None,
                message=f"{len(report.devices)} devices",
            )
        elif node.healthy != report.healthy:
            record_event(
                session,
                at=now,
                object_kind="node",
                object_id=node.id,
                kind="node.health",
                tenant_id=None,
                before="healthy" if node.healthy else "unhealthy",
                after="healthy" if report.healthy else "unhealthy",
                message=report.message,
            )
        node.cpu_milli, node.memory_mib = report.cpu_milli, report.memory_mib
        node.healthy, node.health_message = report.healthy, report.message
        node.labels, node.last_seen_at = dict(report.labels), now
        known = {d.index: d for d in node.devices}
        for dev in report.devices:
            row = known.get(dev.index)
            if row is None:
                row = Device(id=device_id(report.id, dev.index), node_id=report.id, index=dev.index)
                session.add(row)
            row.model, row.memory_mib, row.uuid = dev.model, dev.memory_mib, dev.uuid
            row.pci_bus_id, row.nvlink_peers = dev.pci_bus_id, list(dev.nvlink_peers)
            row.healthy, row.simulated = dev.healthy, dev.simulated


def mark_silent_nodes(session: Session, seen: set[str], now: datetime) -> None:
    """Nodes the engine stopped reporting are unhealthy until they come back."""
    for node in session.scalars(select(Node).where(Node.healthy)):
        if node.id not in seen:
            node.healthy, node.health_message = False, "not reported by the engine"
            record_event(
                session,
                at=now,
                object_kind="node",
                object_id=node.id,
                kind="node.health",
                tenant_id=None,
                before="healthy",
                after="unhealthy",
                message=node.health_message,
            )


def cluster_snapshot(session: Session) -> ClusterSnapshot:
    """Nodes with what active allocations hold on them: the scheduler's view of the fleet."""
    claimed = set(session.scalars(select(DeviceClaim.device_id)))
    used = {
        node_id: (cpu or 0, mem or 0)
        for node_id, cpu, mem in session.execute(
            select(
                Allocation.node_id, func.sum(Allocation.cpu_milli), func.sum(Allocation.memory_mib)
            )
            .where(Allocation.active)
            .group_by(Allocation.node_id)
        )
    }
    nodes = []
    for node in session.scalars(select(Node).order_by(Node.id)):
        cpu_used, mem_used = used.get(node.id, (0, 0))
        nodes.append(
            NodeView(
                id=node.id,
                healthy=node.healthy,
                cpu_milli=node.cpu_milli,
                memory_mib=node.memory_mib,
                cpu_milli_used=int(cpu_used),
                memory_mib_used=int(mem_used),
                devices=tuple(
                    DeviceView(
                        id=d.id,
                        index=d.index,
                        model=d.model,
                        healthy=d.healthy,
                        allocated=d.id in claimed,
                    )
                    for d in node.devices
                ),
                labels=tuple(sorted((str(k), str(v)) for k, v in (node.labels or {}).items())),
            )
        )
    return ClusterSnapshot(tuple(nodes))


def request_of_spec(spec: JobSpec) -> Request:
    return Request(
        gpus=spec.gpus,
        gpu_models=frozenset({spec.gpu_type}) if spec.gpu_type else None,
        cpu_milli=spec.cpu_milli,
        memory_mib=spec.memory_mib,
    )


@dataclass(frozen=True)
class QueuedJob:
    workload: Workload
    reason: str  # why it waits, as last written (to write only what changed)
    message: str


def queued_jobs(session: Session, window: int) -> list[QueuedJob]:
    """The head of the queue in placement order (priority, then submission), as plain rows."""
    rows = session.execute(
        select(
            Job.id,
            Job.tenant_id,
            Job.priority,
            Job.gpus,
            Job.gpu_type,
            Job.cpu_milli,
            Job.memory_mib,
            Job.reason,
            Job.message,
        )
        .where(Job.state == JobState.QUEUED)
        .order_by(Job.priority.desc(), Job.id)
        .limit(window)
    )
    return [
        QueuedJob(
            Workload(
                id=r.id,
                tenant_id=r.tenant_id,
                priority=r.priority,
                order_key=r.id,
                request=Request(
                    gpus=r.gpus,
                    gpu_models=frozenset({r.gpu_type}) if r.gpu_type else None,
                    cpu_milli=r.cpu_milli,
                    memory_mib=r.memory_mib,
                ),
            ),
            r.reason,
            r.message,
        )
        for r in rows
    ]


def allocation_gpu_model(session: Session, allocation: Allocation) -> str | None:
    """The model of the GPUs an allocation holds (what it pays for, whatever the job asked)."""
    if not allocation.device_ids:
        return None
    device = session.get(Device, allocation.device_ids[0])
    return device.model if device is not None else None


def fleet_models(session: Session, gpus: int) -> set[str]:
    """Models of which some node has at least ``gpus`` devices: where such a job could land."""
    per_node: dict[tuple[str, str], int] = {}
    for node_id, model in session.execute(select(Device.node_id, Device.model)):
        per_node[(node_id, model)] = per_node.get((node_id, model), 0) + 1
    return {model for (_, model), count in per_node.items() if count >= gpus}
