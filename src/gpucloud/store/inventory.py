"""The fleet in the database: nodes and devices as the engine reports them, and what they hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.engines.base import NodeReport
from gpucloud.store.models import Allocation, Device, Node
from gpucloud.store.transitions import record_event

_FLEET_MODELS = "gpucloud.fleet_models"  # session.info: fleet_models' memo for one session


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
        node.address = report.address
        known = {d.index: d for d in node.devices}
        session.info.pop(_FLEET_MODELS, None)  # the models may change below
        for dev in report.devices:
            row = known.get(dev.index)
            if row is None:
                row = Device(id=device_id(report.id, dev.index), node_id=report.id, index=dev.index)
                session.add(row)
            row.model, row.memory_mib, row.uuid = dev.model, dev.memory_mib, dev.uuid
            row.pci_bus_id, row.nvlink_peers = dev.pci_bus_id, list(dev.nvlink_peers)
            row.healthy, row.simulated = dev.healthy, dev.simulated


DRAIN_PREFIX = "gpucloud: "  # marks the drains gpucloud made, the only ones it undoes


@dataclass(frozen=True)
class EngineNodeChange:
    node_id: str
    drain: bool  # True: drain it; False: resume it
    reason: str = ""


def engine_node_changes(
    session: Session, reports: Sequence[NodeReport]
) -> list[EngineNodeChange]:
    """What the engine must be told so that its nodes match gpucloud's quarantine: drain the
    quarantined ones it still schedules on, resume the ones gpucloud drained and returned.
    A drain someone else made (an operator in Slurm) is theirs to undo."""
    quarantined = {
        node.id: node.quarantine_reason
        for node in session.scalars(select(Node).where(Node.quarantined_at.is_not(None)))
    }
    changes = []
    for report in reports:
        if report.id in quarantined and not report.drained:
            changes.append(EngineNodeChange(report.id, True, DRAIN_PREFIX + quarantined[report.id]))
        elif (report.id not in quarantined and report.drained
              and report.drain_reason.startswith(DRAIN_PREFIX)):
            changes.append(EngineNodeChange(report.id, False))
    return changes


def quarantine_node(session: Session, node: Node, reason: str, who: str, now: datetime) -> None:
    """Take the node out of service: nothing new is placed on it; running work goes on."""
    if node.quarantined_at is not None:
        # Already out: the reason changes, and an operator's quarantine is not ended by a
        # burn-in the way the platform's is.
        node.quarantine_reason, node.quarantine_source = reason, "operator"
        return
    node.quarantined_at, node.quarantine_reason, node.quarantine_source = now, reason, "operator"
    record_event(session, at=now, object_kind="node", object_id=node.id, kind="node.quarantine",
                 tenant_id=None, before="in service", after="quarantined",
                 message=f"{reason} (by {who})")


def return_node(session: Session, node: Node, who: str, now: datetime) -> None:
    """Put a quarantined node back into service. Idempotent."""
    if node.quarantined_at is None:
        return
    node.quarantined_at, node.quarantine_reason, node.quarantine_source = None, "", ""
    record_event(session, at=now, object_kind="node", object_id=node.id, kind="node.quarantine",
                 tenant_id=None, before="quarantined", after="in service",
                 message=f"returned to service by {who}")


def return_device(session: Session, node: Node, index: int, who: str, now: datetime) -> bool:
    """An operator puts a GPU back (quarantined or retired). False if there is no such GPU."""
    device = next((d for d in node.devices if d.index == index), None)
    if device is None:
        return False
    if device.quarantined_at is None and device.retired_at is None:
        return True
    device.quarantined_at, device.quarantine_reason, device.retired_at = None, "", None
    record_event(session, at=now, object_kind="node", object_id=node.id,
                 kind="device.quarantine", tenant_id=None, before="quarantined",
                 after="in service", message=f"GPU {index} returned to service by {who}")
    return True


def mark_silent_nodes(
    session: Session, seen: set[str], now: datetime, silence_s: float = 0.0
) -> None:
    """Nodes the engine stopped reporting for ``silence_s`` are unhealthy until they come back
    (one missed report is not yet a lost heartbeat)."""
    for node in session.scalars(select(Node).where(Node.healthy)):
        silent_for = (now - node.last_seen_at).total_seconds()
        if node.id not in seen and silent_for >= silence_s:
            node.healthy = False
            node.health_message = f"no heartbeat for {silent_for:.0f} s"
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
    """Models of which some node has at least ``gpus`` devices: where such a job could land.

    Read once per session (a pass admits or quotes many jobs): the devices change only in
    ``sync_nodes`` above, which forgets the memo."""
    memo: dict[int, set[str]] = session.info.setdefault(_FLEET_MODELS, {})
    if gpus not in memo:
        per_node: dict[tuple[str, str], int] = {}
        for node_id, model in session.execute(select(Device.node_id, Device.model)):
            per_node[(node_id, model)] = per_node.get((node_id, model), 0) + 1
        memo[gpus] = {model for (_, model), count in per_node.items() if count >= gpus}
    return set(memo[gpus])
