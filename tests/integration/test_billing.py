"""Billing end to end through the API and controllers, on real SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpucloud.store.db import Database
from gpucloud.store.models import AllocationMeter, Event
from tests.billing_api import bearer, priced_api, run_for, submit, tenant, wallet
from tests.fakes import gpu_node
from tests.harness import Harness, make_harness


@pytest.fixture
def h(db: Database) -> Harness:
    return make_harness(db, nodes=[gpu_node(gpus=8)])


@pytest.fixture
def api(h: Harness) -> TestClient:
    return priced_api(h)


def test_a_six_second_job_costs_six(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "20")
    job = submit(api, token)
    h.settle()  # admitted, placed, launched, running: metering starts now
    run_for(h, 6)
    h.engine.exit(job["id"], 0)
    h.settle()
    assert wallet(api, token)["balance"] == "14.00"
    usage = api.get("/v1/usage", headers=bearer(token)).json()
    assert [(u["job_id"], u["seconds"], u["cost"]) for u in usage] == [(job["id"], 6, "6.00")]
    report = api.get("/v1/admin/ledger/verify", headers=bearer(h.admin_token)).json()
    assert report["ok"] and report["violations"] == []


def test_an_empty_wallet_stops_the_job_with_insufficient_funds(
        h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "20")
    job = submit(api, token)
    h.settle()
    stopped_at = None
    for second in range(1, 40):
        h.clock.advance(1)
        h.settle(1)
        if h.engine.run_of(job["id"]).signals and stopped_at is None:
            stopped_at = second
            h.engine.exit(job["id"], 143)  # the process honours SIGTERM
    final = api.get(f"/v1/jobs/{job['id']}", headers=bearer(token)).json()
    assert (final["state"], final["reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    balance = float(wallet(api, token)["balance"])
    assert stopped_at is not None and stopped_at <= 20
    # Stopped early enough that the balance ends between zero and minus one metering interval.
    assert -1.0 <= balance <= 4.0
    with h.ctx.db.read() as session:
        kinds = set(session.scalars(select(Event.kind).where(Event.tenant_id.is_not(None))))
    assert {"wallet.low_balance", "job.stop_requested"} <= kinds


def test_a_tenant_without_money_is_refused_at_submit(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "broke", None)
    response = api.post("/v1/jobs", headers=bearer(token),
                        json={"command": ["x"], "gpus": 1, "gpu_type": "H100"})
    assert response.status_code == 402
    problem = response.json()
    assert problem["code"] == "insufficient_funds" and "top up at least 10.00 CNY" in (
        problem["detail"])
    assert api.get("/v1/jobs", headers=bearer(token)).json()["items"] == []


def test_a_price_change_mid_job_splits_the_charge(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "100")
    job = submit(api, token)
    h.settle()
    run_for(h, 3)
    api.post("/v1/prices", headers=bearer(h.admin_token),
             json={"model": "H100", "gpu_hour": "1800"}).raise_for_status()
    run_for(h, 4)
    h.engine.exit(job["id"], 0)
    h.settle()
    assert wallet(api, token)["balance"] == "95.00"  # 3 s at 1.00, then 4 s at 0.50


def test_a_restarted_control_plane_charges_every_second_once(
        h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "100")
    job = submit(api, token)
    h.settle()
    run_for(h, 5)
    restarted = h.restart()
    for _ in range(5):
        restarted.clock.advance(1)
        restarted.settle(1)
    h.engine.exit(job["id"], 0)
    restarted.settle()
    with h.ctx.db.read() as session:
        meter = session.scalars(select(AllocationMeter)).one()
    assert (meter.metered_seconds, meter.charged_minor, meter.final) == (10, 1000, True)
    assert wallet(api, token)["balance"] == "90.00"


def test_top_ups_with_the_same_ref_count_once(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "20")
    again = api.post("/v1/admin/topups", json={"tenant": "acme", "amount": "20", "ref": "first"},
                     headers=bearer(h.admin_token))
    assert again.status_code == 201 and wallet(api, token)["balance"] == "20.00"
    bad = api.post("/v1/admin/topups", json={"tenant": "acme", "amount": "0.001"},
                   headers=bearer(h.admin_token))
    assert bad.status_code == 422 and "2 decimals" in bad.json()["detail"]
    member = api.post("/v1/admin/topups", json={"tenant": "acme", "amount": "5"},
                      headers=bearer(token))
    assert member.status_code == 403 and wallet(api, token)["balance"] == "20.00"


def test_packages_pay_for_gpu_time_before_money(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "400000")
    bought = api.post("/v1/packages", json={"offer": "h100-100h"}, headers=bearer(token))
    assert bought.status_code == 201, bought.text
    after_purchase = bought.json()
    assert after_purchase["package_card_hours"] == {"H100": "100.0000"}
    job = submit(api, token)
    h.settle()
    run_for(h, 10)
    h.engine.exit(job["id"], 0)
    h.settle()
    now = wallet(api, token)
    assert now["balance"] == after_purchase["balance"]  # GPU time came from the package
    assert now["package_card_hours"] == {"H100": f"{(100 * 3600 - 10) / 3600:.4f}"}


def test_credits_need_a_reason_and_land_in_the_wallet(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "1")
    missing = api.post("/v1/admin/credits", json={"tenant": "acme", "amount": "5", "reason": ""},
                       headers=bearer(h.admin_token))
    assert missing.status_code == 422
    given = api.post("/v1/admin/credits", headers=bearer(h.admin_token),
                     json={"tenant": "acme", "amount": "5", "reason": "outage on node 3"})
    assert given.status_code == 201 and wallet(api, token)["balance"] == "6.00"


def test_settings_are_validated(h: Harness, api: TestClient) -> None:
    admin = bearer(h.admin_token)
    ok = api.put("/v1/admin/config/billing.admission_runway_seconds", json={"value": "60"},
                 headers=admin)
    assert ok.status_code == 200 and ok.json()["value"] == "60"
    bad = api.put("/v1/admin/config/billing.admission_runway_seconds", json={"value": "-1"},
                  headers=admin)
    unknown = api.put("/v1/admin/config/billing.nope", json={"value": "1"}, headers=admin)
    assert bad.status_code == unknown.status_code == 422
    assert "billing.admission_runway_seconds" in unknown.json()["detail"]
    # With money moved, the currency can no longer change.
    tenant(api, h, "acme", "1")
    frozen = api.put("/v1/admin/config/billing.currency", json={"value": "USD"}, headers=admin)
    assert frozen.status_code == 409


def test_estimate_quotes_price_and_admission(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "10")
    quote = api.post("/v1/estimates", headers=bearer(token), json={
        "command": ["x"], "gpus": 2, "gpu_type": "H100", "max_duration": "30m"}).json()
    assert quote["price_per_hour"]["amount"] == "7200.00"
    assert quote["cost_for_max_duration"]["amount"] == "3600.00"
    assert quote["funds_ok"] is False and "top up at least 10.00" in quote["funds_message"]
    assert quote["fits_fleet"] is True


def test_any_gpu_jobs_pay_for_the_gpus_they_got(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "20")
    response = api.post("/v1/jobs", headers=bearer(token),
                        json={"command": ["x"], "gpus": 1, "max_duration": "10s"})
    assert response.status_code == 201, response.text
    h.settle()
    run_for(h, 4)
    h.engine.exit(response.json()["id"], 0)
    h.settle()
    assert wallet(api, token)["balance"] == "16.00"  # 4 s of an H100 at 1.00
    broke = tenant(api, h, "broke", None)
    refused = api.post("/v1/jobs", headers=bearer(broke), json={"command": ["x"], "gpus": 1})
    assert refused.status_code == 402


def test_two_jobs_in_one_pass_cannot_overspend_a_package(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "100000")
    bought = api.post("/v1/packages", json={"offer": "h100-100h"}, headers=bearer(token)).json()
    a, b = submit(api, token, gpus=4), submit(api, token, gpus=4)
    h.settle()
    # One pass charges 50,000 s for each: 2 x 200,000 card-seconds against a 360,000 package.
    h.clock.advance(50_000)
    h.settle(1)
    for job in (a, b):
        h.engine.exit(job["id"], 0)
    h.settle()
    after = wallet(api, token)
    assert after["package_card_hours"] == {"H100": "0.0000"}
    # The 40,000 card-seconds the package could not cover were paid at 1.00 each.
    paid = float(bought["balance"]) - float(after["balance"])
    assert paid == 40_000.0
    report = api.get("/v1/admin/ledger/verify", headers=bearer(h.admin_token)).json()
    assert report["ok"], report["violations"]
