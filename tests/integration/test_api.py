"""The REST API in-process, on real SQLite and PostgreSQL: tenancy, validation, idempotency."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from gpucloud.store.db import Database
from tests.fakes import gpu_node
from tests.harness import Harness, make_harness


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def h(db: Database) -> Harness:
    return make_harness(db, nodes=[gpu_node(gpus=8)])


@pytest.fixture
def api(h: Harness) -> TestClient:
    return h.api()


def new_tenant(api: TestClient, admin: str, name: str) -> str:
    assert api.post("/v1/tenants", json={"name": name}, headers=bearer(admin)).status_code == 201
    created = api.post(
        "/v1/users", json={"name": f"{name}-user", "tenant": name}, headers=bearer(admin)
    )
    assert created.status_code == 201, created.text
    token: str = created.json()["token"]
    funded = api.post("/v1/admin/topups", json={"tenant": name, "amount": "100000"},
                      headers=bearer(admin))
    assert funded.status_code == 201, funded.text
    return token


def submit(api: TestClient, token: str, **spec: Any) -> dict[str, Any]:
    body = {"command": ["sh", "-c", "echo hi"], "cpus": 1, **spec}
    response = api.post("/v1/jobs", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def job_count(api: TestClient, token: str) -> int:
    return len(api.get("/v1/jobs", headers=bearer(token)).json()["items"])


def test_health_and_openapi(api: TestClient) -> None:
    assert api.get("/healthz").status_code == 200
    spec = api.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}/logs", "/v1/nodes", "/v1/tokens"} <= set(spec["paths"])


def test_another_tenants_job_is_404_on_every_route(h: Harness, api: TestClient) -> None:
    alice = new_tenant(api, h.admin_token, "alice")
    bob = new_tenant(api, h.admin_token, "bob")
    job = submit(api, alice, gpus=1)
    h.settle()
    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/logs"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
    ]:
        response = api.request(method, path, headers=bearer(bob))
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"
    assert api.get("/v1/jobs", headers=bearer(bob)).json()["items"] == []
    events = api.get("/v1/events", headers=bearer(bob)).json()["items"]
    assert all(e["object_id"] != job["id"] for e in events)
    # bob's cancel changed nothing; alice (and the operator) still see the job running
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(alice)).json()["state"] == "RUNNING"
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(h.admin_token)).status_code == 200


def test_node_view_hides_other_tenants_jobs(h: Harness, api: TestClient) -> None:
    alice = new_tenant(api, h.admin_token, "alice")
    bob = new_tenant(api, h.admin_token, "bob")
    job = submit(api, alice, gpus=2)
    h.settle()
    seen_by = {
        who: api.get("/v1/nodes", headers=bearer(tok)).json()["items"][0]["devices"]
        for who, tok in [("alice", alice), ("bob", bob)]
    }
    alice_jobs = {d["allocation"]["job_id"] for d in seen_by["alice"] if d["allocation"]}
    bob_view = [d["allocation"] for d in seen_by["bob"] if d["allocation"]]
    assert alice_jobs == {job["id"]}
    assert len(bob_view) == 2 and all(a["job_id"] is None for a in bob_view)
    assert all(d["simulated"] for d in seen_by["bob"])


@pytest.mark.parametrize(
    ("spec", "status", "fragment"),
    [
        ({"gpus": 2, "gpu_type": "B300"}, 422, "unknown GPU type"),
        ({"gpus": 9}, 422, "can never fit"),
        ({"gpus": 2, "gpu_type": "A100-80G"}, 422, "can never fit"),
        ({"max_duration": "-5"}, 422, "max_duration"),
        ({"gpus": -1}, 422, "gpus"),
        ({"cpus": 10000}, 422, "cpus"),
        ({"command": []}, 422, "command"),
        ({"surprise": True}, 422, "surprise"),
    ],
)
def test_bad_job_requests_are_refused_and_create_nothing(
    h: Harness, api: TestClient, spec: dict[str, Any], status: int, fragment: str
) -> None:
    body = {"command": ["true"], **spec}
    response = api.post("/v1/jobs", json=body, headers=bearer(h.admin_token))
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert fragment in problem["detail"] and problem["status"] == status
    assert job_count(api, h.admin_token) == 0


def test_bad_tokens_are_401_with_a_hint(api: TestClient) -> None:
    missing = api.get("/v1/jobs")
    wrong = api.get("/v1/jobs", headers=bearer("gpc_nope"))
    assert missing.status_code == wrong.status_code == 401
    assert "Authorization: Bearer" in missing.json()["detail"]
    assert "unknown or revoked" in wrong.json()["detail"]


def test_revoked_and_expired_tokens_stop_working(h: Harness, api: TestClient) -> None:
    made = api.post(
        "/v1/tokens", json={"name": "ci", "expires_in_s": 60}, headers=bearer(h.admin_token)
    ).json()
    assert api.get("/v1/whoami", headers=bearer(made["token"])).status_code == 200
    h.clock.advance(61)
    assert api.get("/v1/whoami", headers=bearer(made["token"])).status_code == 401
    other = api.post("/v1/tokens", json={"name": "ci2"}, headers=bearer(h.admin_token)).json()
    assert api.delete(f"/v1/tokens/{other['id']}", headers=bearer(h.admin_token)).status_code == 200
    assert api.get("/v1/whoami", headers=bearer(other["token"])).status_code == 401


def test_roles_are_enforced(h: Harness, api: TestClient) -> None:
    api.post("/v1/tenants", json={"name": "team"}, headers=bearer(h.admin_token))
    viewer = api.post(
        "/v1/users",
        json={"name": "watcher", "tenant": "team", "role": "viewer"},
        headers=bearer(h.admin_token),
    ).json()["token"]
    member = api.post(
        "/v1/users", json={"name": "doer", "tenant": "team"}, headers=bearer(h.admin_token)
    ).json()["token"]
    refused = api.post("/v1/jobs", json={"command": ["true"]}, headers=bearer(viewer))
    assert refused.status_code == 403 and "member role" in refused.json()["detail"]
    assert api.post("/v1/tenants", json={"name": "x"}, headers=bearer(member)).status_code == 403
    assert api.post("/v1/users", json={"name": "y"}, headers=bearer(member)).status_code == 403
    assert api.get("/v1/tenants", headers=bearer(member)).json()["items"][0]["name"] == "team"


def test_idempotency_key_replays_the_first_response(h: Harness, api: TestClient) -> None:
    headers = {**bearer(h.admin_token), "Idempotency-Key": "run-1"}
    first = api.post("/v1/jobs", json={"command": ["true"]}, headers=headers)
    again = api.post("/v1/jobs", json={"command": ["true"]}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert job_count(api, h.admin_token) == 1
    clash = api.post("/v1/jobs", json={"command": ["false"]}, headers=headers)
    assert clash.status_code == 422 and clash.json()["code"] == "idempotency_key_reused"
    assert job_count(api, h.admin_token) == 1


def test_duplicate_names_conflict(h: Harness, api: TestClient) -> None:
    assert (
        api.post("/v1/tenants", json={"name": "dup"}, headers=bearer(h.admin_token)).status_code
        == 201
    )
    again = api.post("/v1/tenants", json={"name": "dup"}, headers=bearer(h.admin_token))
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    bad = api.post("/v1/tenants", json={"name": "Bad Name"}, headers=bearer(h.admin_token))
    assert bad.status_code == 422


def test_pagination_walks_every_job_once(h: Harness, api: TestClient) -> None:
    made = {submit(api, h.admin_token)["id"] for _ in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/jobs", params=params, headers=bearer(h.admin_token)).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and seen == sorted(seen, reverse=True)


def test_job_lifecycle_through_the_api(h: Harness, api: TestClient) -> None:
    job = submit(api, h.admin_token, gpus=4, name="train-1", env={"LR": "0.1"})
    assert (job["state"], job["reason"]) == ("PENDING", "SUBMITTED")
    h.settle()
    shown = api.get(f"/v1/jobs/{job['id']}", headers=bearer(h.admin_token)).json()
    assert shown["state"] == "RUNNING" and len(shown["devices"]) == 4
    h.engine.run_of(job["id"]).output = b"step 1\nstep 2\n"
    logs = api.get(f"/v1/jobs/{job['id']}/logs", headers=bearer(h.admin_token))
    assert logs.text == "step 1\nstep 2\n"
    tail = api.get(
        f"/v1/jobs/{job['id']}/logs", params={"offset": 7}, headers=bearer(h.admin_token)
    )
    assert tail.text == "step 2\n"
    cancelled = api.post(f"/v1/jobs/{job['id']}/cancel", headers=bearer(h.admin_token)).json()
    assert cancelled["cancel_requested"] is True
    h.settle()
    h.engine.exit(job["id"], 143)
    h.settle()
    final = api.get(f"/v1/jobs/{job['id']}", headers=bearer(h.admin_token)).json()
    assert (final["state"], final["exit_code"], final["devices"]) == ("CANCELLED", 143, [])
    events = api.get(f"/v1/jobs/{job['id']}/events", headers=bearer(h.admin_token)).json()
    assert [e["after"] for e in events["items"] if e["kind"] == "job.state"] == [
        "PENDING",
        "QUEUED",
        "SCHEDULED",
        "STARTING",
        "RUNNING",
        "CANCELLED",
    ]
