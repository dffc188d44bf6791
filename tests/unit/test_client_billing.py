"""The billing SDK at its HTTP boundary (httpx.MockTransport): paths, queries, bodies, keys."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpucloud import ApiError, Client
from gpucloud.client import config
from gpucloud.schemas import JobSpec

URL = "http://gpucloud.test"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test may read the developer's own profile or environment."""
    monkeypatch.delenv(config.URL_ENV, raising=False)
    monkeypatch.delenv(config.TOKEN_ENV, raising=False)
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path / "config.json"))
    monkeypatch.setattr("gpucloud.client.client.RETRY_PAUSE_S", 0)
    yield


def amount(value: str, currency: str = "CNY") -> dict[str, Any]:
    return {"amount": value, "minor": int(value.replace(".", "")), "currency": currency}


def book(version: int = 1, h100: str = "28.00") -> dict[str, Any]:
    return {
        "version": version, "effective_from": "2026-01-01T00:00:00Z", "currency": "CNY",
        "gpu_hour": {"H100": amount(h100)}, "cpu_core_hour": amount("0.10"),
        "memory_gib_hour": amount("0.01"), "storage_gib_month": amount("0.50"),
        "spot_discount_pct": 30,
        "packages": [{"name": "h100-100h", "model": "H100", "gpu_hours": 100,
                      "price": amount("2000.00")}],
    }  # fmt: skip


def wallet(balance: str = "20.00") -> dict[str, Any]:
    return {
        "tenant_id": "tnt_1", "currency": "CNY", "balance": balance,
        "balance_minor": int(balance.replace(".", "")), "package_card_hours": {},
        "burn_rate_per_hour": "0.00", "seconds_left": None, "running_allocations": 0,
    }  # fmt: skip


USAGE_ROW = {
    "job_id": "job_1", "job_name": "train", "allocation_id": "alc_1", "gpu_model": "H100",
    "gpus": 1, "seconds": 6, "gpu_seconds": 6, "card_seconds_from_packages": 0, "cost": "6.00",
    "cost_minor": 600, "currency": "CNY", "started_at": "2026-01-01T00:00:00Z",
}  # fmt: skip
ESTIMATE = {
    "price_per_hour": amount("3600.00"), "max_duration_s": 3600,
    "cost_for_max_duration": amount("3600.00"), "balance": amount("20.00"), "funds_ok": False,
    "funds_message": "top up at least 3580.00 CNY", "fits_fleet": True,
    "fits_message": "fits this fleet",
}  # fmt: skip
SETTING = {"key": "billing.admission_runway_seconds", "value": "60", "help": "runway"}
REPORT = {"ok": True, "violations": [], "transactions": 3, "accounts": 4}


class Recorder:
    """Answers by (method, path) and keeps every request it saw."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.answers[(request.method, request.url.path)]
        if isinstance(body, httpx.Response):
            return body
        return httpx.Response(status, json=body)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def client(recorder: Recorder) -> Client:
    return Client(URL, "secret", transport=httpx.MockTransport(recorder))


def problem(status: int, code: str, detail: str) -> httpx.Response:
    body = {"type": f"urn:gpucloud:problem:{code}", "title": "x", "status": status,
            "code": code, "detail": detail}  # fmt: skip
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def test_prices_reads_the_history() -> None:
    history_json = {"current": book(2), "versions": [book(1), book(2)]}
    rec = Recorder({("GET", "/v1/prices"): (200, history_json)})
    history = client(rec).prices()
    assert history.current.version == 2
    assert history.current.gpu_hour["H100"].amount == "28.00"
    assert history.current.packages[0].price.minor == 200000
    assert [v.version for v in history.versions] == [1, 2]
    assert rec.last.headers["authorization"] == "Bearer secret"


def test_set_price_sends_only_what_changes() -> None:
    rec = Recorder({("POST", "/v1/prices"): (201, book(3, "3600.00"))})
    api = client(rec)
    out = api.set_price("H100", "3600.00")
    assert out.version == 3
    assert out.gpu_hour["H100"].amount == "3600.00"
    assert rec.body() == {"model": "H100", "gpu_hour": "3600.00"}
    api.set_price(cpu_core_hour="0", memory_gib_hour="0", spot_discount_pct=0)
    assert rec.body() == {"cpu_core_hour": "0", "memory_gib_hour": "0", "spot_discount_pct": 0}


def test_set_price_is_not_resent_after_a_lost_answer() -> None:
    """The server does not key price changes: a resend could add a second version."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadTimeout("slow", request=request)

    api = Client(URL, "secret", transport=httpx.MockTransport(handler))
    with pytest.raises(ApiError) as info:
        api.set_price("H100", "1.00")
    assert info.value.code == "timeout"
    assert len(calls) == 1


def test_wallet_of_a_tenant_or_the_caller() -> None:
    rec = Recorder({("GET", "/v1/wallet"): (200, wallet("14.00"))})
    api = client(rec)
    held = api.wallet()
    assert held.balance == "14.00"
    assert held.seconds_left is None
    assert "tenant" not in rec.last.url.params
    api.wallet("acme")
    assert rec.last.url.params["tenant"] == "acme"


def test_buy_package_is_keyed() -> None:
    rec = Recorder({("POST", "/v1/packages"): (201, wallet("0.00"))})
    api = client(rec)
    api.buy_package("h100-100h")
    api.buy_package("h100-100h", idempotency_key="mine")
    assert rec.body(0) == {"offer": "h100-100h"}
    first = rec.requests[0].headers["idempotency-key"]
    uuid.UUID(first)
    assert rec.requests[1].headers["idempotency-key"] == "mine"


def test_usage_sends_from_and_to_in_utc() -> None:
    rec = Recorder({("GET", "/v1/usage"): (200, [USAGE_ROW])})
    api = client(rec)
    rows = api.usage()
    assert rows[0].job_id == "job_1"
    assert rows[0].gpu_seconds == 6
    assert rows[0].cost == "6.00"
    assert not rec.last.url.params
    plus8 = timezone(timedelta(hours=8))
    api.usage("acme", since=datetime(2026, 1, 2, 8, tzinfo=plus8), until=datetime(2026, 1, 3))
    params = rec.last.url.params
    assert params["tenant"] == "acme"
    assert datetime.fromisoformat(params["from"]) == datetime(2026, 1, 2, tzinfo=UTC)
    assert params["from"].endswith("+00:00")
    assert datetime.fromisoformat(params["to"]) == datetime(2026, 1, 3, tzinfo=UTC)  # naive: UTC


def test_usage_of_another_shape_is_a_clear_error() -> None:
    rec = Recorder({("GET", "/v1/usage"): (200, {"items": []})})
    with pytest.raises(ApiError) as info:
        client(rec).usage()
    assert info.value.code == "bad_response"


def test_estimate_posts_the_job_spec() -> None:
    rec = Recorder({("POST", "/v1/estimates"): (200, ESTIMATE)})
    api = client(rec)
    out = api.estimate({"command": ["true"], "gpus": 1, "max_duration": "1h"})
    assert out.price_per_hour.amount == "3600.00"
    assert out.funds_ok is False
    assert out.fits_fleet is True
    body = rec.body()
    assert body["command"] == ["true"]
    assert body["gpus"] == 1
    assert body["max_duration_s"] == 3600
    api.estimate(JobSpec(command=["true"]))
    assert rec.body()["gpus"] == 0


def test_an_invalid_estimate_is_refused_before_sending() -> None:
    rec = Recorder({})
    with pytest.raises(ApiError) as info:
        client(rec).estimate({"command": [], "gpus": 1})
    assert info.value.status == 422
    assert not rec.requests


def test_topup_always_sends_an_idempotency_key() -> None:
    rec = Recorder({("POST", "/v1/admin/topups"): (201, wallet("20.00"))})
    api = client(rec)
    held = api.topup("acme", "20")
    api.topup("acme", "20", ref="pay-1")
    assert held.balance == "20.00"
    assert rec.body(0) == {"tenant": "acme", "amount": "20", "ref": None}
    assert rec.body(1) == {"tenant": "acme", "amount": "20", "ref": "pay-1"}
    keys = [r.headers.get("idempotency-key") for r in rec.requests]
    assert all(keys)
    assert keys[0] != keys[1]


def test_a_topup_is_resent_with_the_same_key_after_a_lost_answer() -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("idempotency-key"))
        if len(keys) == 1:
            raise httpx.ReadError("reset", request=request)
        return httpx.Response(201, json=wallet("20.00"))

    api = Client(URL, "secret", transport=httpx.MockTransport(handler))
    assert api.topup("acme", "20").balance == "20.00"
    assert len(keys) == 2
    assert keys[0] == keys[1] is not None


def test_credit_carries_its_reason() -> None:
    rec = Recorder({("POST", "/v1/admin/credits"): (201, wallet("25.00"))})
    held = client(rec).credit("acme", "5", "node lost", ref="inc-7")
    assert held.balance == "25.00"
    assert rec.body() == {"tenant": "acme", "amount": "5", "reason": "node lost", "ref": "inc-7"}
    assert rec.last.headers.get("idempotency-key")


def test_verify_ledger() -> None:
    bad = {"ok": False, "violations": ["tx 3 sums to 1", "account x drifted"],
           "transactions": 3, "accounts": 4}  # fmt: skip
    rec = Recorder({("GET", "/v1/admin/ledger/verify"): (200, bad)})
    report = client(rec).verify_ledger()
    assert report.ok is False
    assert report.violations == ["tx 3 sums to 1", "account x drifted"]


def test_config_list_get_and_set() -> None:
    rec = Recorder({
        ("GET", "/v1/admin/config"): (200, [SETTING]),
        ("GET", "/v1/admin/config/billing.admission_runway_seconds"): (200, SETTING),
        ("PUT", "/v1/admin/config/billing.admission_runway_seconds"): (200, SETTING),
    })  # fmt: skip
    api = client(rec)
    assert [s.key for s in api.config()] == ["billing.admission_runway_seconds"]
    assert api.get_config("billing.admission_runway_seconds").value == "60"
    out = api.set_config("billing.admission_runway_seconds", "60")
    assert out.value == "60"
    assert rec.last.method == "PUT"
    assert rec.body() == {"value": "60"}


def test_an_unknown_setting_is_the_servers_sentence() -> None:
    detail = "unknown setting 'nope'; known: billing.admission_runway_seconds"
    refused = problem(422, "invalid_request", detail)
    rec = Recorder({("PUT", "/v1/admin/config/nope"): (422, refused)})
    with pytest.raises(ApiError) as info:
        client(rec).set_config("nope", "1")
    assert (info.value.status, info.value.code, str(info.value)) == (
        422,
        "invalid_request",
        detail,
    )


def test_insufficient_funds_is_a_402_api_error_with_the_servers_sentence() -> None:
    detail = ("this job costs 3600.00 CNY per hour and needs 600s covered to start; the wallet "
              "has 0.00 CNY: top up at least 600.00 CNY")  # fmt: skip
    rec = Recorder({
        ("POST", "/v1/jobs"): (402, problem(402, "insufficient_funds", detail)),
        ("POST", "/v1/packages"): (402, problem(402, "insufficient_funds", "top up 1.00 CNY")),
    })  # fmt: skip
    api = client(rec)
    with pytest.raises(ApiError) as info:
        api.submit_job({"command": ["true"], "gpus": 1})
    assert (info.value.status, info.value.code) == (402, "insufficient_funds")
    assert str(info.value) == detail
    assert len(rec.requests) == 1  # a refusal is an answer: never resent
    with pytest.raises(ApiError) as bought:
        api.buy_package("h100-100h")
    assert bought.value.code == "insufficient_funds"


def test_operator_only_calls_surface_forbidden() -> None:
    refused = problem(403, "forbidden", "top-ups need an operator")
    rec = Recorder({("POST", "/v1/admin/topups"): (403, refused)})
    with pytest.raises(ApiError) as info:
        client(rec).topup("acme", "1")
    assert (info.value.status, str(info.value)) == (403, "top-ups need an operator")
