"""The SDK resends a call that is safe to resend while the server answers 503 (its database
away), with backoff, and never resends one that is not."""

from __future__ import annotations

import httpx
import pytest

from gpucloud.client import Client
from gpucloud.client import client as client_module
from gpucloud.client.client import ApiError

UNAVAILABLE = {"code": "database_unavailable", "detail": "the database is briefly unavailable"}


def flaky(failures: int, calls: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) <= failures:
            return httpx.Response(503, json=UNAVAILABLE, headers={"Retry-After": "0"})
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    return httpx.MockTransport(handler)


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "RETRY_PAUSE_S", 0)


def test_a_read_is_resent_through_a_database_restart() -> None:
    calls: list[str] = []
    with Client("http://gpucloud.test", "t", transport=flaky(4, calls)) as client:
        assert client.list_jobs() == []
    assert calls == ["GET"] * 5


def test_resending_stops_after_the_last_attempt_with_the_servers_words() -> None:
    calls: list[str] = []
    client = Client("http://gpucloud.test", "t", transport=flaky(99, calls))
    with client, pytest.raises(ApiError) as info:
        client.list_jobs()
    assert info.value.status == 503
    assert info.value.code == "database_unavailable"
    assert len(calls) == client_module.ATTEMPTS


def test_a_call_not_safe_to_resend_is_sent_once() -> None:
    calls: list[str] = []
    client = Client("http://gpucloud.test", "t", transport=flaky(1, calls))
    with client, pytest.raises(ApiError):
        client._send("POST", "/v1/anything")
    assert calls == ["POST"]
