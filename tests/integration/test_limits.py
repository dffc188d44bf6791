"""Quotas and budgets end to end through the API and controllers, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from gpucloud.store.db import Database
from tests.billing_api import bearer, priced_api, submit, tenant, wallet
from tests.fakes import gpu_node
from tests.harness import Harness, make_harness


@pytest.fixture
def h(db: Database) -> Harness:
    return make_harness(db, nodes=[gpu_node("h", gpus=8), gpu_node("a", 8, "A100-80G")])


@pytest.fixture
def api(h: Harness) -> TestClient:
    return priced_api(h)


def set_limit(api: TestClient, h: Harness, **body: Any) -> list[dict[str, Any]]:
    response = api.put("/v1/admin/limits", json=body, headers=bearer(h.admin_token))
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def job(api: TestClient, token: str, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()
    return body


def test_a_gpu_cap_holds_jobs_with_the_reason_until_one_finishes(
    h: Harness, api: TestClient
) -> None:
    token = tenant(api, h, "acme", "1000")
    other = tenant(api, h, "beta", "1000")
    set_limit(api, h, tenant="acme", kind="gpus", value="2", model="H100")
    first, second, third = (submit(api, token) for _ in range(3))
    free = submit(api, other, gpus=4)  # another tenant is not held to acme's cap
    h.settle()
    states = [job(api, token, j["id"])["state"] for j in (first, second, third)]
    assert states == ["RUNNING", "RUNNING", "PENDING"]
    waiting = job(api, token, third["id"])
    assert waiting["reason"] == "WAITING_FOR_QUOTA"
    assert "at most 2 H100s at once" in waiting["message"]
    assert job(api, other, free["id"])["state"] == "RUNNING"
    # An A100 job is not held to the H100 cap.
    a100 = submit(api, token, gpu_type="A100-80G", gpus=4)
    h.settle()
    assert job(api, token, a100["id"])["state"] == "RUNNING"
    limits = api.get("/v1/limits", headers=bearer(token)).json()
    assert [(row["limit"], row["used"]) for row in limits] == [("at most 2 H100s at once", 2)]

    h.engine.exit(first["id"], 0)
    h.settle()
    assert job(api, token, third["id"])["state"] == "RUNNING"


def test_a_job_larger_than_a_cap_is_refused_at_submit_and_nothing_is_stored(
    h: Harness, api: TestClient
) -> None:
    token = tenant(api, h, "acme", "1000")
    set_limit(api, h, tenant="acme", kind="compute-units", value="6.4")  # two H100s
    response = api.post(
        "/v1/jobs",
        headers=bearer(token),
        json={"command": ["x"], "gpus": 3, "gpu_type": "H100"},
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "exceeds_quota"
    assert "9.6 compute units at once" in problem["detail"]
    assert api.get("/v1/jobs", headers=bearer(token)).json()["items"] == []
    estimate = api.post(
        "/v1/estimates", headers=bearer(token), json={"command": ["x"], "gpus": 3}
    ).json()
    assert estimate["quota_ok"] is False and estimate["quota_message"].startswith("never:")


def test_a_card_hour_budget_stops_the_job_and_holds_the_next_until_the_period_resets(
    h: Harness, api: TestClient
) -> None:
    token = tenant(api, h, "acme", "1000")
    # 90 card-seconds of H100 a day; the runway is 10 s, so a two-GPU job is admitted.
    rows = set_limit(
        api, h, tenant="acme", kind="card-hours", value="0.025", model="H100", period="day"
    )
    assert rows[0]["amount"] == 90
    first = submit(api, token, gpus=2)
    h.settle()
    stopped_at = None
    for second in range(1, 60):
        h.clock.advance(1)
        h.settle(1)
        if h.engine.run_of(first["id"]).signals and stopped_at is None:
            stopped_at = second
            h.engine.exit(first["id"], 143)
    final = job(api, token, first["id"])
    assert (final["state"], final["reason"]) == ("FAILED", "BUDGET_EXHAUSTED")
    # Two GPUs against 90 card-seconds: stopped before the budget plus the stop horizon.
    assert stopped_at is not None and 40 <= stopped_at <= 45
    used = api.get("/v1/limits", headers=bearer(token)).json()[0]["used"]
    assert 80 <= used <= 100  # overrun bounded by one stop horizon

    second_job = submit(api, token)
    h.settle()
    held = job(api, token, second_job["id"])
    assert (held["state"], held["reason"]) == ("PENDING", "WAITING_FOR_BUDGET")
    assert "resets at 2026-01-02 00:00 UTC" in held["message"]
    h.clock.advance(86_400)
    h.settle()
    assert job(api, token, second_job["id"])["state"] == "RUNNING"


def test_a_spend_budget_stops_jobs_before_the_wallet_would(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "1000")
    set_limit(api, h, tenant="acme", kind="spend", value="15.00", period="week")
    first = submit(api, token)
    h.settle()
    for _ in range(40):
        h.clock.advance(1)
        h.settle(1)
        if h.engine.run_of(first["id"]).signals:
            h.engine.exit(first["id"], 143)
            h.settle()
            break
    final = job(api, token, first["id"])
    assert (final["state"], final["reason"]) == ("FAILED", "BUDGET_EXHAUSTED")
    spent = 1000 - float(wallet(api, token)["balance"])
    assert 10.0 <= spent <= 16.0
    events = api.get("/v1/events", headers=bearer(token)).json()["items"]
    kinds = [e["kind"] for e in events]
    # Warned once at 80% (12.00 of 15.00), however many passes saw it past the mark.
    assert kinds.count("budget.low") == 1 and kinds.count("budget.exhausted") == 1
    low = next(e for e in events if e["kind"] == "budget.low")
    assert "of the budget of 15.00 CNY per week used" in low["message"]
    report = api.get("/v1/admin/ledger/verify", headers=bearer(h.admin_token)).json()
    assert report["ok"], report["violations"]


def test_limits_are_set_by_operators_only_and_checked(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "10")
    other = tenant(api, h, "beta", "10")
    body = {"tenant": "acme", "kind": "gpus", "value": "2"}
    denied = api.put("/v1/admin/limits", json=body, headers=bearer(token))
    assert denied.status_code == 403
    for bad, fragment in [
        ({**body, "kind": "spend"}, "needs a period"),
        ({**body, "value": "1.5"}, "finer than whole GPUs"),
        ({**body, "model": "B300"}, "unknown GPU type"),
        ({**body, "kind": "spend", "period": "day", "model": "H100"}, "cannot name a GPU model"),
        ({**body, "tenant": "nobody"}, "not found"),
        ({**body, "kind": "bananas"}, "kind"),
    ]:
        response = api.put("/v1/admin/limits", json=bad, headers=bearer(h.admin_token))
        assert 400 <= response.status_code < 500, bad
        assert fragment in response.text, (bad, response.text)
    assert api.get("/v1/limits?tenant=acme", headers=bearer(h.admin_token)).json() == []

    set_limit(api, h, **body)
    set_limit(api, h, **{**body, "value": "3"})  # the same kind replaces, never duplicates
    rows = api.get("/v1/limits?tenant=acme", headers=bearer(h.admin_token)).json()
    assert [row["amount"] for row in rows] == [3]
    # Tenants see their own limits only.
    assert api.get("/v1/limits?tenant=acme", headers=bearer(other)).status_code == 404
    assert api.get("/v1/limits", headers=bearer(other)).json() == []

    gone = api.delete(
        "/v1/admin/limits",
        params={"tenant": "acme", "kind": "gpus"},
        headers=bearer(h.admin_token),
    )
    assert gone.status_code == 200 and gone.json() == []
    again = api.delete(
        "/v1/admin/limits",
        params={"tenant": "acme", "kind": "gpus"},
        headers=bearer(h.admin_token),
    )
    assert again.status_code == 404
