"""The fleet in the database: nodes and devices as the engine reports them, and what they hold."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.engines.base import NodeReport
from gpucloud.store.models import Allocation, Device, Node
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
