"""Rows to wire objects. Visibility rules for shared objects (devices) are applied here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.core.tenancy import Principal, Role
from gpucloud.schemas import (
    DeviceAllocation,
    DeviceOut,
    EventOut,
    FaultOut,
    JobOut,
    NodeOut,
    TenantOut,
    TokenOut,
    UserOut,
)
from gpucloud.store.health import fault_history
from gpucloud.store.models import (
    Allocation,
    ApiToken,
    DeviceClaim,
    Event,
    Fault,
    Job,
    Node,
    Tenant,
    User,
)


def job_out(job: Job, allocations: Sequence[Allocation] = ()) -> JobOut:
    """``allocations``: what the job holds now (rank order), empty when it holds nothing."""
    spec = job.spec
    return JobOut(
        id=job.id,
        name=job.name,
        tenant_id=job.tenant_id,
        user_id=job.user_id,
        state=job.state,
        reason=job.reason,
        message=job.message,
        command=list(spec["command"]),
        env=dict(spec.get("env", {})),
        gpus=job.gpus,
        gpu_type=job.gpu_type,
        cpus=job.cpu_milli / 1000,
        memory_mib=job.memory_mib,
        priority=job.priority,
        tier=job.tier,
        max_duration_s=job.max_duration_s,
        exit_code=job.exit_code,
        restart_count=job.restart_count,
        cancel_requested=job.stop_request is not None,
        stop_request=job.stop_request,
        nodes=job.nodes,
        node_id=allocations[0].node_id if allocations else None,
        node_ids=[a.node_id for a in allocations],
        devices=[d for a in allocations for d in a.device_ids],
        image=spec.get("image"),
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
    )


def nodes_out(session: Session, who: Principal, nodes: list[Node]) -> list[NodeOut]:
    """Nodes with their devices; a device held by another tenant shows as taken, nothing more."""
    holders: Mapping[str, tuple[str, str, str]] = {
        device_id: (allocation_id, job_id, tenant_id)
        for device_id, allocation_id, job_id, tenant_id in session.execute(
            select(DeviceClaim.device_id, Allocation.id, Job.id, Job.tenant_id)
            .join(Allocation, Allocation.id == DeviceClaim.allocation_id)
            .join(Job, Job.id == Allocation.job_id)
        )
    }
    used: dict[str, tuple[int, int]] = {}
    for alloc in session.scalars(select(Allocation).where(Allocation.active)):
        cpu, mem = used.get(alloc.node_id, (0, 0))
        used[alloc.node_id] = (cpu + alloc.cpu_milli, mem + alloc.memory_mib)
    history = fault_history(session, [n.id for n in nodes]) if who.is_operator else {}
    out = []
    for node in nodes:
        devices = []
        for d in node.devices:
            holder = holders.get(d.id)
            allocation = None
            if holder is not None:
                visible = who.can_see(holder[2])
                allocation = DeviceAllocation(
                    allocation_id=holder[0] if visible else None,
                    job_id=holder[1] if visible else None,
                )
            devices.append(
                DeviceOut(
                    id=d.id,
                    index=d.index,
                    model=d.model,
                    memory_mib=d.memory_mib,
                    uuid=d.uuid,
                    pci_bus_id=d.pci_bus_id,
                    nvlink_peers=list(d.nvlink_peers),
                    health="healthy" if d.healthy else "unhealthy",
                    simulated=d.simulated,
                    allocation=allocation,
                    quarantined=d.quarantined_at is not None,
                    quarantine_reason=d.quarantine_reason,
                    retired=d.retired_at is not None,
                )
            )
        cpu_used, mem_used = used.get(node.id, (0, 0))
        out.append(
            NodeOut(
                id=node.id,
                engine=node.engine,
                health="healthy" if node.healthy else "unhealthy",
                health_message=node.health_message,
                simulated=any(d.simulated for d in devices),
                cpus=node.cpu_milli / 1000,
                cpus_allocated=cpu_used / 1000,
                memory_mib=node.memory_mib,
                memory_mib_allocated=mem_used,
                labels={str(k): str(v) for k, v in (node.labels or {}).items()},
                last_seen_at=node.last_seen_at,
                address=node.address,
                quarantined=node.quarantined_at is not None,
                quarantine_reason=node.quarantine_reason,
                quarantined_at=node.quarantined_at,
                quarantined_by=node.quarantine_source,
                devices=devices,
                faults=[fault_out(f) for f in history.get(node.id, [])] if who.is_operator
                else [],
            )
        )
    return out


def fault_out(fault: Fault) -> FaultOut:
    return FaultOut(
        id=fault.id,
        at=fault.at,
        node_id=fault.node_id,
        device_index=fault.device_index,
        kind=fault.kind,
        code=fault.code,
        action=fault.action,
        description=fault.description,
        alert=fault.alert,
        job_ids=[str(j) for j in fault.job_ids],
    )


def event_out(event: Event) -> EventOut:
    return EventOut(
        id=event.id,
        at=event.at,
        object_kind=event.object_kind,
        object_id=event.object_id,
        kind=event.kind,
        before=event.before,
        after=event.after,
        reason=event.reason,
        message=event.message,
    )


def tenant_out(tenant: Tenant) -> TenantOut:
    return TenantOut(
        id=tenant.id, name=tenant.name, is_operator=tenant.is_operator, created_at=tenant.created_at
    )


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        name=user.name,
        tenant_id=user.tenant_id,
        tenant=user.tenant.name,
        role=Role(user.role),
        created_at=user.created_at,
    )


def token_out(token: ApiToken) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        user_id=token.user_id,
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
    )
