"""Multi-node jobs: gangs placed whole, launched once with every rank, ended together."""

from __future__ import annotations

from sqlalchemy import select

from gpucloud.core.states import JobState
from gpucloud.store.db import Database
from gpucloud.store.models import Allocation
from tests.fakes import gpu_node
from tests.harness import make_harness
from tests.integration.test_controllers import state, submit


def test_a_two_node_job_gets_both_nodes_and_every_rank_its_layout(db: Database) -> None:
    h = make_harness(db, nodes=[gpu_node("n0"), gpu_node("n1")])
    job_id = submit(h, 8, nodes=2)
    h.settle()
    assert state(h, job_id).state is JobState.RUNNING
    spec = h.engine.run_of(job_id).spec
    assert h.engine.starts == 1  # one launch for the whole gang
    assert [r.node_id for r in spec.replicas] in (["n0", "n1"], ["n1", "n0"])
    ports = {r.env["MASTER_PORT"] for r in spec.replicas}
    assert len(ports) == 1
    for rank, replica in enumerate(spec.replicas):
        env = replica.env
        assert replica.rank == rank and list(replica.device_indexes) == list(range(8))
        assert (env["NODE_RANK"], env["NNODES"], env["WORLD_SIZE"]) == (str(rank), "2", "16")
        assert (env["RANK"], env["LOCAL_WORLD_SIZE"]) == (str(8 * rank), "8")
        assert env["MASTER_ADDR"] == "127.0.0.1"
        assert env["GPUCLOUD_JOB_ID"] == job_id
    with db.read() as session:
        allocations = list(session.scalars(select(Allocation).where(Allocation.job_id == job_id)))
    assert sorted(a.replica for a in allocations) == [0, 1]
    assert len({a.node_id for a in allocations}) == 2
    assert all(a.started_at is not None and a.engine_ref for a in allocations)

    h.engine.exit(job_id, 0)
    h.settle()
    assert state(h, job_id).state is JobState.SUCCEEDED
    with db.read() as session:
        assert not any(a.active for a in session.scalars(select(Allocation)))


def test_a_gang_waits_whole_rather_than_starting_on_the_nodes_that_are_free(
    db: Database,
) -> None:
    h = make_harness(db, nodes=[gpu_node("n0"), gpu_node("n1")])
    blocker = submit(h, 8)
    h.settle()
    gang = submit(h, 8, nodes=2)
    h.settle()
    waiting = state(h, gang)
    assert waiting.state is JobState.QUEUED and waiting.reason == "WAITING_FOR_RESOURCES"
    with db.read() as session:
        assert session.scalars(select(Allocation).where(Allocation.job_id == gang)).all() == []
    h.engine.exit(blocker, 0)
    h.settle()
    assert state(h, gang).state is JobState.RUNNING


def test_a_job_larger_than_the_fleet_in_nodes_is_refused_at_submit(db: Database) -> None:
    h = make_harness(db, nodes=[gpu_node("n0"), gpu_node("n1")])
    api = h.api()
    headers = {"Authorization": f"Bearer {h.admin_token}"}
    response = api.post("/v1/jobs", headers=headers,
                        json={"command": ["x"], "nodes": 3, "gpus": 8})
    assert response.status_code == 422
    assert "2 of 2 nodes could hold one node's share, 3 needed" in response.json()["detail"]
    fine = api.post("/v1/jobs", headers=headers, json={"command": ["x"], "nodes": 2, "gpus": 8})
    assert fine.status_code == 201
    body = fine.json()
    assert (body["nodes"], body["gpus"]) == (2, 8)
    h.settle()
    placed = api.get(f"/v1/jobs/{body['id']}", headers=headers).json()
    assert sorted(placed["node_ids"]) == ["n0", "n1"] and len(placed["devices"]) == 16


def test_each_node_of_a_multi_node_job_is_a_different_node(db: Database) -> None:
    h = make_harness(db, nodes=[gpu_node("n0"), gpu_node("n1")])
    job_id = submit(h, 1, nodes=2)  # two 1-GPU shares would fit on one node; they must not
    h.settle()
    assert state(h, job_id).state is JobState.RUNNING
    replicas = h.engine.run_of(job_id).spec.replicas
    assert sorted(r.node_id for r in replicas) == ["n0", "n1"]
    h.engine.node_reports = [gpu_node("n0")]  # n1 is gone: 7 GPUs free, all on n0
    h.settle()
    big = submit(h, 1, nodes=2)
    h.settle()
    waiting = state(h, big)
    assert waiting.state is JobState.QUEUED and waiting.reason == "WAITING_FOR_RESOURCES"
