"""Faults in the database: what a signal hit, the quarantine it calls for, the jobs it stops,
retirement of GPUs that keep failing, and their return after a burn-in."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpucloud.core.faults import (
    DEFAULT_XID_POLICY,
    FaultAction,
    FaultDecision,
    FaultSignal,
    parse_xid_policy,
    policy_document,
)
from gpucloud.core.lifecycle import StopReason
from gpucloud.core.states import HOLDS_ALLOCATION, JobState, Reason
from gpucloud.store.jobs import request_stop
from gpucloud.store.models import Allocation, Device, Fault, Job, Node, PlatformSetting
from gpucloud.store.settings import get_setting
from gpucloud.store.transitions import record_event, transition

PLATFORM = "platform"  # quarantine_source of what a fault took out (it returns by itself)
OPERATOR = "operator"
XID_POLICY_KEY = "health.xid_policy"  # a document, so kept beside the scalar settings


def xid_policy(session: Session) -> dict[int, tuple[FaultAction, str]]:
    row = session.get(PlatformSetting, XID_POLICY_KEY)
    if row is None:
        return dict(DEFAULT_XID_POLICY)
    return parse_xid_policy(json.loads(row.value))


def set_xid_policy(session: Session, table: Mapping[int, tuple[FaultAction, str]] | None,
                   now: datetime) -> None:
    """Replace the table (None: back to the defaults)."""
    row = session.get(PlatformSetting, XID_POLICY_KEY)
    if table is None:
        if row is not None:
            session.delete(row)
        return
    text = json.dumps(policy_document(table))
    if row is None:
        session.add(PlatformSetting(key=XID_POLICY_KEY, value=text, updated_at=now))
    else:
        row.value, row.updated_at = text, now


def cursor(session: Session, engine: str) -> int:
    """The last engine signal handled: it is written with the actions it caused."""
    value = session.scalar(select(func.max(Fault.engine_seq)).where(Fault.engine == engine))
    return int(value or 0)


@dataclass(frozen=True)
class Handled:
    fault: Fault
    stopped: list[str]  # jobs stopped to restart elsewhere


def handle(session: Session, engine: str, signal: FaultSignal, decision: FaultDecision,
           now: datetime) -> Handled:
    """Record the fault and carry out its decision. A signal the platform noticed itself (a
    silent node) has seq 0; an engine's are handled once each (the seq is unique)."""
    node_id, device_index = signal.node_id, signal.device_index
    node = session.get(Node, node_id)
    hit = _jobs_hit(session, node_id, device_index if decision.scope == "gpu" else None)
    fault = Fault(engine=engine, engine_seq=signal.seq or None, at=signal.at, node_id=node_id,
                  device_index=device_index, kind=signal.kind.value, code=signal.code,
                  action=decision.action.value, description=decision.description,
                  alert=decision.alert, job_ids=[j.id for j in hit])
    session.add(fault)
    where = node_id if device_index is None else f"{node_id} GPU {device_index}"
    record_event(session, at=now, object_kind="node", object_id=node_id, kind="node.fault",
                 tenant_id=None, reason=decision.action.value,
                 message=f"{decision.description} on {where}")
    if decision.alert:
        record_event(session, at=now, object_kind="node", object_id=node_id, kind="alert",
                     tenant_id=None, reason="unknown-fault",
                     message=f"{decision.description} on {where}: drained; please look")
    if node is None:
        return Handled(fault, [])
    if decision.action is FaultAction.RESET_GPU and device_index is not None:
        _quarantine_device(session, node, device_index, decision.description, now)
    elif decision.action is FaultAction.DRAIN_NODE:
        _quarantine_node(session, node, decision.description, now)
    stopped = []
    for job in hit:
        if decision.stops_jobs:
            if _stop_for_restart(session, job, decision.description, where, signal.at, now):
                stopped.append(job.id)
        else:
            record_event(session, at=now, object_kind="job", object_id=job.id, kind="job.fault",
                         tenant_id=job.tenant_id, reason=decision.action.value,
                         message=f"{decision.description} on {where} (the job's own error: "
                                 "no restart, no credit)")
    return Handled(fault, stopped)


def record_exit_hint(session: Session, engine: str, job: Job, node_id: str, hint: str,
                     now: datetime) -> None:
    """A failed job's last lines mention a GPU or NCCL error: kept for operators (the same
    hint from many jobs on one node points at the node), never acted on alone."""
    description = f"a failed job's output mentions a GPU error: {hint}"
    session.add(Fault(engine=engine, engine_seq=None, at=now, node_id=node_id,
                      device_index=None, kind="exit-hint", code=None,
                      action=FaultAction.OBSERVE.value, description=description, alert=False,
                      job_ids=[job.id]))
    record_event(session, at=now, object_kind="job", object_id=job.id, kind="job.hint",
                 tenant_id=job.tenant_id,
                 message=f"its last output mentions a GPU or NCCL error ({hint}); that is a "
                         "hint, not proof: no restart")


def _jobs_hit(session: Session, node_id: str, device_index: int | None) -> list[Job]:
    held = [s.value for s in HOLDS_ALLOCATION]
    device = f"{node_id}/gpu{device_index}" if device_index is not None else None
    jobs: dict[str, Job] = {}
    for allocation, job in session.execute(
        select(Allocation, Job).join(Job, Job.id == Allocation.job_id)
        .where(Allocation.node_id == node_id, Allocation.active, Job.state.in_(held))
    ):
        if device is None or device in allocation.device_ids:
            jobs[job.id] = job
    return list(jobs.values())


def _stop_for_restart(session: Session, job: Job, what: str, where: str, at: datetime,
                      now: datetime) -> bool:
    """Stop the job so that it restarts on healthy hardware (a gang: every rank, since one
    launch holds them all). A job not launched yet just goes back to the queue."""
    record_event(session, at=now, object_kind="job", object_id=job.id, kind="job.fault",
                 tenant_id=job.tenant_id, reason=Reason.RESTARTING.value,
                 message=f"{what} on {where}: stopping it to restart elsewhere")
    job.fault_at = job.fault_at or at
    launched = session.scalar(
        select(func.count()).select_from(Allocation)
        .where(Allocation.job_id == job.id, Allocation.active,
               Allocation.launch_attempted_at.is_not(None))
    )
    if job.state == JobState.SCHEDULED and not launched:
        transition(session, job, JobState.QUEUED, Reason.RESTARTING, now,
                   f"{what} on {where} before it started: placed again elsewhere")
        job.fault_at = None  # it never ran: nothing was lost
        return True
    return request_stop(session, job, StopReason.PLATFORM_FAULT, now,
                        f"{what} on {where}: restarting elsewhere from its last checkpoint")


def _quarantine_device(session: Session, node: Node, index: int, why: str,
                       now: datetime) -> None:
    device = next((d for d in node.devices if d.index == index), None)
    if device is None:
        return
    if device.quarantined_at is None:
        device.quarantined_at, device.quarantine_reason = now, why
        record_event(session, at=now, object_kind="node", object_id=node.id,
                     kind="device.quarantine", tenant_id=None, before="in service",
                     after="quarantined", message=f"GPU {index}: {why}")
    _maybe_retire(session, node, device, now)  # every fault counts, out of the pool or not


def _quarantine_node(session: Session, node: Node, why: str, now: datetime) -> None:
    if node.quarantined_at is not None:
        return  # already out (an operator's quarantine stays the operator's)
    node.quarantined_at, node.quarantine_reason, node.quarantine_source = now, why, PLATFORM
    record_event(session, at=now, object_kind="node", object_id=node.id, kind="node.quarantine",
                 tenant_id=None, before="in service", after="quarantined",
                 message=f"{why} (by the platform; back after a burn-in)")


def _maybe_retire(session: Session, node: Node, device: Device, now: datetime) -> None:
    """A GPU that keeps faulting is retired: no burn-in brings it back, only an operator."""
    window = timedelta(hours=int(get_setting(session, "health.retire_window_hours")))
    limit = int(get_setting(session, "health.retire_after_faults"))
    session.flush()
    count = session.scalar(
        select(func.count()).select_from(Fault).where(
            Fault.node_id == node.id, Fault.device_index == device.index,
            Fault.action == FaultAction.RESET_GPU.value, Fault.at >= now - window)
    )
    if int(count or 0) >= limit and device.retired_at is None:
        device.retired_at = now
        record_event(session, at=now, object_kind="node", object_id=node.id,
                     kind="device.retired", tenant_id=None, after="retired",
                     message=f"GPU {device.index}: {count} faults within {window}; retired "
                             "until an operator returns it")


@dataclass(frozen=True)
class BurnInDue:
    node_id: str
    device_index: int | None  # None: the whole node
    simulated: bool


def burn_ins_due(session: Session, now: datetime) -> list[BurnInDue]:
    """What a fault took out long enough ago, on a node that reports again, and is not
    retired: ready to be checked and returned."""
    wait = timedelta(seconds=int(get_setting(session, "health.burn_in_seconds")))
    due = []
    for node in session.scalars(select(Node)):
        simulated = bool(node.devices) and all(d.simulated for d in node.devices)
        if not node.healthy:
            continue
        if (node.quarantine_source == PLATFORM and node.quarantined_at is not None
                and node.quarantined_at + wait <= now):
            due.append(BurnInDue(node.id, None, simulated))
        for d in node.devices:
            if (d.quarantined_at is not None and d.retired_at is None
                    and d.quarantined_at + wait <= now):
                due.append(BurnInDue(node.id, d.index, d.simulated))
    return due


def burn_in_done(session: Session, due: BurnInDue, passed: bool, detail: str,
                 now: datetime) -> None:
    node = session.get(Node, due.node_id)
    if node is None:
        return
    what = "node" if due.device_index is None else f"GPU {due.device_index}"
    if not passed:  # stays out; checked again after another burn-in period
        if due.device_index is None:
            node.quarantined_at = now
        else:
            for d in node.devices:
                if d.index == due.device_index:
                    d.quarantined_at = now
        record_event(session, at=now, object_kind="node", object_id=node.id, kind="alert",
                     tenant_id=None, reason="burn-in-failed",
                     message=f"{what} failed its burn-in: {detail}")
        return
    if due.device_index is None:
        if node.quarantine_source != PLATFORM or node.quarantined_at is None:
            return
        node.quarantined_at, node.quarantine_reason, node.quarantine_source = None, "", ""
    else:
        device = next((d for d in node.devices if d.index == due.device_index), None)
        if device is None or device.quarantined_at is None or device.retired_at is not None:
            return
        device.quarantined_at, device.quarantine_reason = None, ""
    record_event(session, at=now, object_kind="node", object_id=node.id,
                 kind="node.quarantine" if due.device_index is None else "device.quarantine",
                 tenant_id=None, before="quarantined", after="in service",
                 message=f"{what} passed its burn-in ({detail}) and is back in the pool")


def unhealthy_in_service(session: Session) -> list[Node]:
    """Nodes that stopped reporting (or that the engine says are down) and are not yet
    quarantined: their jobs cannot be trusted to run on."""
    return list(session.scalars(
        select(Node).where(~Node.healthy, Node.quarantined_at.is_(None))
    ))


def fault_history(session: Session, node_ids: Sequence[str], limit: int = 20) -> dict[
        str, list[Fault]]:
    found: dict[str, list[Fault]] = {n: [] for n in node_ids}
    for fault in session.scalars(
        select(Fault).where(Fault.node_id.in_(node_ids)).order_by(Fault.id.desc())
    ):
        if len(found[fault.node_id]) < limit:
            found[fault.node_id].append(fault)
    return found
