"""Helpers for billing and limits tests through the API: tenants, jobs, wallets, time."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.harness import Harness


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def priced_api(h: Harness) -> TestClient:
    client = h.api()
    # The acceptance prices: H100 at 3600 per GPU-hour (1.00 a second), nothing else.
    change = client.post("/v1/prices", headers=bearer(h.admin_token), json={
        "model": "H100", "gpu_hour": "3600", "cpu_core_hour": "0", "memory_gib_hour": "0"})
    assert change.status_code == 201, change.text
    # A short runway, so that 20.00 admits a job at 1.00 a second (the default is 600 s).
    client.put("/v1/admin/config/billing.admission_runway_seconds", json={"value": "10"},
               headers=bearer(h.admin_token)).raise_for_status()
    return client


def tenant(api: TestClient, h: Harness, name: str, balance: str | None) -> str:
    api.post("/v1/tenants", json={"name": name}, headers=bearer(h.admin_token))
    user = api.post("/v1/users", json={"name": f"{name}-u", "tenant": name},
                    headers=bearer(h.admin_token)).json()
    if balance is not None:
        api.post("/v1/admin/topups", json={"tenant": name, "amount": balance, "ref": "first"},
                 headers=bearer(h.admin_token)).raise_for_status()
    token: str = user["token"]
    return token


def submit(api: TestClient, token: str, **extra: Any) -> dict[str, Any]:
    response = api.post("/v1/jobs", headers=bearer(token),
                        json={"command": ["train"], "gpus": 1, "gpu_type": "H100", **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def wallet(api: TestClient, token: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get("/v1/wallet", headers=bearer(token)).json()
    return body


def run_for(h: Harness, seconds: int) -> None:
    for _ in range(seconds):
        h.clock.advance(1)
        h.settle(1)
