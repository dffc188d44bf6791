"""Operators take nodes out of service: the scheduler avoids them and the engine drains them."""

from __future__ import annotations

from gpucloud.core.states import JobState
from gpucloud.store.db import Database
from tests.billing_api import bearer, tenant
from tests.fakes import gpu_node
from tests.harness import make_harness
from tests.integration.test_controllers import state, submit


def test_a_quarantined_node_gets_nothing_new_and_is_drained_until_returned(
    db: Database,
) -> None:
    h = make_harness(db, nodes=[gpu_node("n0"), gpu_node("n1")])
    api = h.api()
    admin = bearer(h.admin_token)
    running = submit(h, 8)
    h.settle()
    busy = state(h, running)
    node = api.get(f"/v1/jobs/{running}", headers=admin).json()["node_id"]
    other = "n1" if node == "n0" else "n0"

    answer = api.post(f"/v1/nodes/{other}/quarantine", headers=admin,
                      json={"reason": "fan failure"})
    assert answer.status_code == 200
    assert answer.json()["quarantined"] and answer.json()["quarantine_reason"] == "fan failure"
    h.settle()
    assert h.engine.drained == {other: "gpucloud: fan failure"}
    assert busy.state is JobState.RUNNING and state(h, running).state is JobState.RUNNING

    waiting = submit(h, 8)
    h.settle()
    job = state(h, waiting)
    assert job.state is JobState.QUEUED and job.reason == "WAITING_FOR_RESOURCES"

    assert api.post(f"/v1/nodes/{other}/return", headers=admin).json()["quarantined"] is False
    h.settle()
    assert h.engine.drained == {}
    assert state(h, waiting).state is JobState.RUNNING
    events = api.get("/v1/events", headers=admin, params={"object_id": other}).json()["items"]
    assert {(e["before"], e["after"]) for e in events if e["kind"] == "node.quarantine"} == {
        ("in service", "quarantined"), ("quarantined", "in service")}


def test_only_operators_quarantine_and_someone_else_s_drain_is_left_alone(
    db: Database,
) -> None:
    h = make_harness(db, nodes=[gpu_node("n0"), gpu_node("n1")])
    api = h.api()
    member = tenant(api, h, "acme", "10")
    refused = api.post("/v1/nodes/n0/quarantine", headers=bearer(member), json={"reason": "x"})
    assert refused.status_code == 403 and "operators only" in refused.json()["detail"]
    missing = api.post("/v1/nodes/nope/quarantine", headers=bearer(h.admin_token),
                       json={"reason": "x"})
    assert missing.status_code == 404
    empty = api.post("/v1/nodes/n0/quarantine", headers=bearer(h.admin_token), json={})
    assert empty.status_code == 422
    h.engine.drained["n1"] = "maintenance by the Slurm admin"
    h.settle()
    assert h.engine.drained == {"n1": "maintenance by the Slurm admin"}
    assert api.get("/v1/nodes/n0", headers=bearer(h.admin_token)).json()["quarantined"] is False
