"""Self-healing with the fake engine and a manual clock: each Xid class takes its path, jobs
restart elsewhere from their checkpoint, gangs restart whole, the restart budget resets on
progress, the tenant is credited once, and burn-in returns (or retirement keeps) hardware."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from gpucloud.checkpoints import checkpoint_done
from gpucloud.core.faults import SignalKind
from gpucloud.core.states import JobState
from gpucloud.store.db import Database
from gpucloud.store.models import Device, Event, Fault, LedgerTransaction, Node
from tests.billing_api import bearer, priced_api, submit, tenant, wallet
from tests.fakes import FakeEngine, gpu_node
from tests.harness import Harness, make_harness
from tests.integration.test_controllers import state


@pytest.fixture
def h(db: Database, tmp_path: Path) -> Harness:
    engine = FakeEngine([gpu_node("n0"), gpu_node("n1")], checkpoint_root=tmp_path)
    return make_harness(db, engine=engine)


def job_events(h: Harness, job_id: str) -> list[tuple[str, str]]:
    with h.ctx.db.read() as session:
        return [(e.kind, e.message) for e in session.scalars(
            select(Event).where(Event.object_id == job_id).order_by(Event.id))]


def node_of(h: Harness, job_id: str) -> str:
    return h.engine.runs_of(job_id)[-1].spec.replicas[0].node_id


def gpu_of(h: Harness, job_id: str) -> int:
    return h.engine.runs_of(job_id)[-1].spec.replicas[0].device_indexes[0]


def restart_after_fault(h: Harness, job_id: str) -> None:
    """The old process honours the stop; the job waits out its back-off, then runs again."""
    run = h.engine.runs_of(job_id)[-1]
    assert run.signals == ["TERM"], "the faulted job was not asked to stop"
    h.engine.exit(job_id, 143)
    h.settle()
    waiting = state(h, job_id)
    assert waiting.state is JobState.QUEUED, (waiting.reason, waiting.message)
    h.clock.advance(5)  # past the first back-off
    h.settle()


def test_a_node_fault_restarts_the_job_elsewhere_from_its_checkpoint(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "acme", "1000")
    job = submit(api, token)["id"]
    h.settle()
    first = node_of(h, job)
    other = "n1" if first == "n0" else "n0"
    h.clock.advance(30)
    checkpoint_done(40, h.engine.checkpoint_dir(job))
    h.settle()
    assert state(h, job).last_checkpoint_step == 40
    h.clock.advance(20)

    h.engine.signal(first, SignalKind.XID, h.clock.now(), device_index=0, code=79)
    h.settle()
    with h.ctx.db.read() as session:
        node = session.get_one(Node, first)
        assert node.quarantined_at is not None and node.quarantine_source == "platform"
        assert "Xid 79: GPU has fallen off the bus" in node.quarantine_reason
    assert h.engine.drained == {first: "gpucloud: Xid 79: GPU has fallen off the bus"}
    restart_after_fault(h, job)

    again = state(h, job)
    assert again.state is JobState.RUNNING and again.restart_count == 1
    latest = h.engine.runs_of(job)[-1].spec.replicas[0]
    assert latest.node_id == other
    assert latest.env["GPUCLOUD_RESTART_COUNT"] == "1"
    assert latest.env["GPUCLOUD_CHECKPOINT_DIR"] == h.engine.checkpoint_dir(job)
    kinds = [kind for kind, _ in job_events(h, job)]
    assert "job.fault" in kinds and "job.credit" in kinds
    messages = " | ".join(message for _, message in job_events(h, job))
    assert "from its checkpoint at step 40" in messages
    # credited: 20 s run since the checkpoint plus the 5 s to get back, at 1.00 a second
    with h.ctx.db.read() as session:
        credits = list(session.scalars(
            select(LedgerTransaction).where(LedgerTransaction.kind == "credit")))
    assert len(credits) == 1 and "25 s lost" in credits[0].memo
    # 1000.00, less the 50 s it ran at 1.00 a second, plus the 25.00 credit
    assert wallet(api, token)["balance_minor"] == 100000 - 5000 + 2500
    report = api.get("/v1/admin/ledger/verify", headers=bearer(h.admin_token)).json()
    assert report["ok"], report


def test_an_application_xid_neither_quarantines_nor_restarts(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "acme", "1000")
    job = submit(api, token)["id"]
    h.settle()
    node = node_of(h, job)
    h.engine.signal(node, SignalKind.XID, h.clock.now(), device_index=0, code=13)
    h.settle()
    assert h.engine.runs_of(job)[-1].signals == []
    with h.ctx.db.read() as session:
        assert session.get_one(Node, node).quarantined_at is None
        assert all(d.quarantined_at is None for d in session.scalars(select(Device)))
    assert ("job.fault", f"Xid 13: graphics engine exception on {node} GPU 0 (the job's own "
            "error: no restart, no credit)") in job_events(h, job)
    h.engine.exit(job, 1)
    h.settle()
    ended = state(h, job)
    assert (ended.state, ended.reason, ended.restart_count) == (JobState.FAILED,
                                                               "EXIT_NONZERO", 0)


def test_a_gpu_fault_takes_out_that_gpu_only(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "acme", "1000")
    a = submit(api, token, gpus=4)["id"]
    b = submit(api, token, gpus=4)["id"]
    h.settle()
    assert node_of(h, a) == node_of(h, b)
    node = node_of(h, a)
    bad = h.engine.runs_of(a)[-1].spec.replicas[0].device_indexes[0]
    h.engine.signal(node, SignalKind.XID, h.clock.now(), device_index=bad, code=48)
    h.settle()
    assert h.engine.runs_of(a)[-1].signals == ["TERM"] and h.engine.runs_of(b)[-1].signals == []
    with h.ctx.db.read() as session:
        quarantined = [(d.node_id, d.index) for d in session.scalars(select(Device))
                       if d.quarantined_at is not None]
        assert quarantined == [(node, bad)]
        assert session.get_one(Node, node).quarantined_at is None
    restart_after_fault(h, a)
    assert state(h, a).state is JobState.RUNNING
    again = h.engine.runs_of(a)[-1].spec.replicas[0]
    assert again.node_id != node or bad not in again.device_indexes


def test_an_unknown_xid_drains_the_node_and_alerts_the_operator(h: Harness) -> None:
    h.engine.signal("n1", SignalKind.XID, h.clock.now(), device_index=2, code=9999)
    h.settle()
    with h.ctx.db.read() as session:
        assert session.get_one(Node, "n1").quarantined_at is not None
        alerts = list(session.scalars(select(Event).where(Event.kind == "alert")))
        fault = session.scalars(select(Fault)).one()
    assert [a.object_id for a in alerts] == ["n1"]
    assert "Xid 9999: not in the policy table" in alerts[0].message
    assert (fault.action, fault.alert, fault.engine_seq) == ("drain-node", True, 1)
    h.settle()  # the same signal is not handled twice
    with h.ctx.db.read() as session:
        assert len(session.scalars(select(Fault)).all()) == 1


def test_a_gang_restarts_whole(h: Harness) -> None:
    h.engine.node_reports.append(gpu_node("n2"))
    h.settle()
    api = priced_api(h)
    token = tenant(api, h, "acme", "1000")
    job = submit(api, token, nodes=2, gpus=8)["id"]
    h.settle()
    first = h.engine.runs_of(job)[-1]
    nodes = [r.node_id for r in first.spec.replicas]
    h.engine.signal(nodes[1], SignalKind.HEARTBEAT_LOSS, h.clock.now())
    h.settle()
    assert first.signals == ["TERM"]  # one launch: every rank is stopped
    restart_after_fault(h, job)
    second = h.engine.runs_of(job)[-1]
    assert second is not first and len(second.spec.replicas) == 2
    assert nodes[1] not in [r.node_id for r in second.spec.replicas]
    assert {r.env["GPUCLOUD_RESTART_COUNT"] for r in second.spec.replicas} == {"1"}


def test_the_restart_budget_resets_when_the_job_makes_progress(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "acme", "100000")
    api.put("/v1/admin/config/health.restart_budget", json={"value": "2"},
            headers=bearer(h.admin_token)).raise_for_status()
    job = submit(api, token)["id"]
    h.settle()
    for round_ in range(4):  # 4 faults, each after a new checkpoint: never gives up
        checkpoint_done(10 * (round_ + 1), h.engine.checkpoint_dir(job))
        h.settle()
        h.engine.signal(node_of(h, job), SignalKind.ECC, h.clock.now(), gpu_of(h, job))
        h.settle()
        restart_after_fault(h, job)
        h.clock.advance(60)
        h.settle()
        assert state(h, job).state is JobState.RUNNING
    job_row = state(h, job)
    assert (job_row.restart_count, job_row.restarts_since_progress) == (4, 1)
    # Now without progress: one more restart, then the budget of 2 is spent.
    h.engine.signal(node_of(h, job), SignalKind.ECC, h.clock.now(), gpu_of(h, job))
    h.settle()
    restart_after_fault(h, job)
    h.clock.advance(60)
    h.settle()
    h.engine.signal(node_of(h, job), SignalKind.ECC, h.clock.now(), gpu_of(h, job))
    h.settle()
    h.engine.exit(job, 143)
    h.settle()
    ended = state(h, job)
    assert (ended.state, ended.reason) == (JobState.FAILED, "RESTART_BUDGET_EXHAUSTED")


def test_burn_in_returns_hardware_and_repeated_faults_retire_a_gpu(h: Harness) -> None:
    api = h.api()
    admin = bearer(h.admin_token)
    api.put("/v1/admin/config/health.burn_in_seconds", json={"value": "30"},
            headers=admin).raise_for_status()
    h.engine.signal("n0", SignalKind.XID, h.clock.now(), device_index=3, code=94)
    h.settle()

    def gpu3() -> Device:
        with h.ctx.db.read() as session:
            return session.get_one(Device, "n0/gpu3")

    assert gpu3().quarantined_at is not None
    h.clock.advance(29)
    h.settle()
    assert gpu3().quarantined_at is not None  # not yet: the burn-in waits 30 s
    h.clock.advance(2)
    h.settle()
    assert gpu3().quarantined_at is None  # simulated burn-in passed: back in the pool

    api.put("/v1/admin/config/health.simulated_burn_in_passes", json={"value": "false"},
            headers=admin).raise_for_status()
    h.engine.signal("n0", SignalKind.XID, h.clock.now(), device_index=3, code=94)
    h.settle()
    h.clock.advance(31)
    h.settle()
    assert gpu3().quarantined_at is not None  # failed its burn-in: stays out
    with h.ctx.db.read() as session:
        assert any("failed its burn-in" in e.message for e in session.scalars(
            select(Event).where(Event.kind == "alert")))
    h.engine.signal("n0", SignalKind.XID, h.clock.now(), device_index=3, code=94)
    h.settle()
    assert gpu3().retired_at is not None  # the third fault in a day retires it
    api.put("/v1/admin/config/health.simulated_burn_in_passes", json={"value": "true"},
            headers=admin).raise_for_status()
    h.clock.advance(3600)
    h.settle()
    assert gpu3().quarantined_at is not None and gpu3().retired_at is not None


def test_the_credit_is_posted_once_across_a_control_plane_restart(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "acme", "1000")
    job = submit(api, token)["id"]
    h.settle()
    h.clock.advance(10)
    h.engine.signal(node_of(h, job), SignalKind.XID, h.clock.now(), device_index=0, code=79)
    h.settle()
    h.engine.exit(job, 143)
    h.settle()
    h.clock.advance(5)
    restarted = h.restart()  # new controllers over the same database and engine
    restarted.settle()
    restarted.restart().settle()
    assert state(restarted, job).state is JobState.RUNNING
    with h.ctx.db.read() as session:
        credits = session.scalars(
            select(LedgerTransaction).where(LedgerTransaction.kind == "credit")).all()
    assert len(credits) == 1 and "15 s lost" in credits[0].memo


def test_operators_edit_the_xid_policy_through_the_api(h: Harness) -> None:
    api = h.api()
    admin = bearer(h.admin_token)
    shown = api.get("/v1/admin/xid-policy", headers=admin).json()
    assert shown["default"] and shown["policy"]["13"]["action"] == "application"
    changed = api.put("/v1/admin/xid-policy", headers=admin,
                      json={"policy": {**shown["policy"], "13": "drain-node"}})
    assert changed.status_code == 200 and changed.json()["default"] is False
    h.engine.signal("n0", SignalKind.XID, h.clock.now(), device_index=0, code=13)
    h.settle()
    with h.ctx.db.read() as session:
        assert session.get_one(Node, "n0").quarantined_at is not None
    bad = api.put("/v1/admin/xid-policy", headers=admin, json={"policy": {"13": "explode"}})
    assert bad.status_code == 422 and "Xid 13: unknown action 'explode'" in bad.json()["detail"]
    assert api.get("/v1/admin/xid-policy", headers=admin).json()["policy"]["13"]["action"] == (
        "drain-node")  # the bad request changed nothing
    reset = api.delete("/v1/admin/xid-policy", headers=admin).json()
    assert reset["default"] and reset["policy"]["13"]["action"] == "application"
    member = tenant(api, h, "acme", None)
    assert api.get("/v1/admin/xid-policy", headers=bearer(member)).status_code == 403
    assert api.get("/v1/faults", headers=bearer(member)).status_code == 403
    faults = api.get("/v1/faults", headers=admin).json()["items"]
    assert [(f["kind"], f["code"], f["action"]) for f in faults] == [("xid", 13, "drain-node")]
    # this engine has no simulated devices to inject into: a clear refusal
    drill = api.post("/v1/debug/faults", headers=admin,
                     json={"node": "n0", "kind": "xid", "xid": 79})
    assert drill.status_code == 422 and "takes no injected faults" in drill.json()["detail"]
    assert api.post("/v1/debug/faults", headers=admin,
                    json={"node": "n0", "kind": "ecc", "xid": 79}).status_code == 422
    assert api.post("/v1/debug/faults", headers=admin,
                    json={"node": "zz", "kind": "ecc"}).status_code == 404


def test_a_cuda_error_in_a_failed_job_s_output_is_a_hint_not_a_restart(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "acme", "1000")
    job = submit(api, token)["id"]
    h.settle()
    run = h.engine.runs_of(job)[-1]
    run.output = b"step 41\nRuntimeError: CUDA error: an illegal memory access was encountered\n"
    h.engine.exit(job, 1)
    h.settle()
    ended = state(h, job)
    assert (ended.state, ended.reason, ended.restart_count) == (JobState.FAILED,
                                                               "EXIT_NONZERO", 0)
    assert any(kind == "job.hint" and "CUDA error: an illegal memory access" in message
               for kind, message in job_events(h, job))
    with h.ctx.db.read() as session:
        fault = session.scalars(select(Fault)).one()
        node = session.get_one(Node, fault.node_id)
    assert (fault.kind, fault.action, fault.job_ids) == ("exit-hint", "observe", [job])
    assert node.quarantined_at is None
