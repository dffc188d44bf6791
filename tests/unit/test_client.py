"""The SDK at its HTTP boundary (httpx.MockTransport): errors, paging, idempotency, config."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpucloud import ApiError, Client
from gpucloud.client import config
from gpucloud.client.client import NoTokenError, UnreachableError

URL = "http://gpucloud.test"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test may read the developer's own profile or environment."""
    monkeypatch.delenv(config.URL_ENV, raising=False)
    monkeypatch.delenv(config.TOKEN_ENV, raising=False)
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path / "config.json"))
    monkeypatch.setattr("gpucloud.client.client.RETRY_PAUSE_S", 0)
    yield


def job_json(job_id: str = "job_1", state: str = "QUEUED", **extra: Any) -> dict[str, Any]:
    return {
        "id": job_id, "name": None, "tenant_id": "tnt_1", "user_id": "usr_1", "state": state,
        "reason": "SUBMITTED", "message": "", "command": ["true"], "env": {}, "gpus": 0,
        "gpu_type": None, "cpus": 1.0, "memory_mib": 1024, "priority": 0,
        "max_duration_s": None, "exit_code": None, "restart_count": 0,
        "cancel_requested": False, "created_at": "2026-01-01T00:00:00Z", "started_at": None,
        "ended_at": None, **extra,
    }  # fmt: skip


def client(handler: Handler, token: str | None = "secret") -> Client:
    return Client(URL, token, transport=httpx.MockTransport(handler))


def problem(status: int, code: str, detail: str) -> httpx.Response:
    body = {"type": f"urn:gpucloud:problem:{code}", "title": "x", "status": status,
            "code": code, "detail": detail}  # fmt: skip
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def test_problem_json_becomes_an_api_error_with_the_server_sentence() -> None:
    api = client(lambda request: problem(404, "not_found", "job 'job_x' not found"))
    with pytest.raises(ApiError) as info:
        api.get_job("job_x")
    assert (info.value.status, info.value.code) == (404, "not_found")
    assert info.value.detail == str(info.value) == "job 'job_x' not found"


def test_a_non_json_error_is_still_readable() -> None:
    api = client(lambda request: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(ApiError) as info:
        api.whoami()
    assert info.value.status == 502
    assert info.value.code == "http_error"
    assert "502" in str(info.value)


def test_requests_carry_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=job_json())

    client(handler).get_job("job_1")
    assert seen[0].headers["authorization"] == "Bearer secret"
    assert seen[0].url.path == "/v1/jobs/job_1"


def test_ids_cannot_change_the_route() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json=job_json())

    client(handler).get_job("../tokens")
    assert seen == ["/v1/jobs/..%2Ftokens"]


def test_listing_follows_next_cursor_and_sends_states() -> None:
    pages = {None: (["job_3", "job_2"], "c1"), "c1": (["job_1"], None)}
    seen: list[httpx.QueryParams] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params)
        ids, cursor = pages[request.url.params.get("cursor")]
        return httpx.Response(200, json={"items": [job_json(i) for i in ids],
                                         "next_cursor": cursor})  # fmt: skip

    jobs = client(handler).list_jobs(states=["QUEUED", "RUNNING"])
    assert [j.id for j in jobs] == ["job_3", "job_2", "job_1"]
    assert len(seen) == 2
    assert seen[0].get_list("state") == ["QUEUED", "RUNNING"]
    assert seen[1]["cursor"] == "c1"


def test_a_limit_stops_paging_early() -> None:
    calls: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.params.get("limit"))
        items = [job_json(f"job_{n}") for n in range(int(request.url.params["limit"]))]
        return httpx.Response(200, json={"items": items, "next_cursor": "more"})

    jobs = client(handler).list_jobs(limit=3)
    assert len(jobs) == 3
    assert calls == ["3"]


def test_submit_always_sends_an_idempotency_key() -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("idempotency-key"))
        body = json.loads(request.content)
        assert body["command"] == ["true"]
        return httpx.Response(201, json=job_json())

    api = client(handler)
    api.submit_job({"command": ["true"]})
    api.submit_job({"command": ["true"]})
    api.submit_job({"command": ["true"]}, idempotency_key="mine")
    assert keys[0] is not None
    assert keys[1] is not None
    uuid.UUID(keys[0])
    assert keys[0] != keys[1]
    assert keys[2] == "mine"


def test_a_connect_error_is_retried_once_with_the_same_key() -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("idempotency-key"))
        if len(keys) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json=job_json())

    job = client(handler).submit_job({"command": ["true"], "memory": "2G"})
    assert job.id == "job_1"
    assert len(keys) == 2
    assert keys[0] == keys[1] is not None


def test_an_unreachable_server_says_so() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(UnreachableError) as info:
        client(handler).list_nodes()
    assert (info.value.status, info.value.code) == (0, "unreachable")
    assert str(info.value) == f"cannot reach gpucloud at {URL}: is 'gpucloud up' running?"
    assert len(calls) == 2


def test_an_invalid_spec_is_refused_before_sending() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    with pytest.raises(ApiError) as info:
        client(handler).submit_job({"command": ["true"], "gpus": -1})
    assert (info.value.status, info.value.code) == (422, "invalid_request")
    assert "gpus" in str(info.value)


def test_no_token_is_a_clear_error_and_sends_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    with pytest.raises(NoTokenError, match="gpucloud login URL --token T"):
        client(handler, token=None).whoami()


def test_logs_stream_bytes_and_ask_to_follow() -> None:
    seen: list[httpx.QueryParams] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params)
        return httpx.Response(200, content=b"line 1\nline 2\n")

    data = b"".join(client(handler).job_logs("job_1", follow=True, offset=3))
    assert data == b"line 1\nline 2\n"
    assert (seen[0]["follow"], seen[0]["offset"]) == ("true", "3")


def test_logs_of_an_unknown_job_raise() -> None:
    api = client(lambda request: problem(404, "not_found", "job 'job_x' not found"))
    with pytest.raises(ApiError, match="not found"):
        list(api.job_logs("job_x"))


def test_wait_polls_until_a_terminal_state() -> None:
    states = iter(["QUEUED", "RUNNING", "SUCCEEDED"])
    api = client(lambda request: httpx.Response(200, json=job_json(state=next(states))))
    assert api.wait_job("job_1", poll_s=0).state == "SUCCEEDED"


def test_wait_gives_up_after_its_timeout() -> None:
    api = client(lambda request: httpx.Response(200, json=job_json(state="RUNNING")))
    with pytest.raises(TimeoutError, match="still RUNNING"):
        api.wait_job("job_1", timeout=0.05, poll_s=0.01)


def test_revoke_uses_delete_and_cancel_uses_post() -> None:
    seen: list[tuple[str, str]] = []
    token = {"id": "tok_1", "name": "cli", "user_id": "usr_1",
             "created_at": "2026-01-01T00:00:00Z", "expires_at": None,
             "revoked_at": "2026-01-02T00:00:00Z"}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return httpx.Response(200, json=token if "tokens" in request.url.path else job_json())

    api = client(handler)
    api.revoke_token("tok_1")
    api.cancel_job("job_1")
    assert seen == [("DELETE", "/v1/tokens/tok_1"), ("POST", "/v1/jobs/job_1/cancel")]


# -- configuration -----------------------------------------------------------------------------


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.resolve() == (config.DEFAULT_URL, None)
    config.save_profile("http://saved:1", "saved-token")
    assert config.resolve() == ("http://saved:1", "saved-token")
    monkeypatch.setenv(config.URL_ENV, "http://env:2/")
    monkeypatch.setenv(config.TOKEN_ENV, "env-token")
    assert config.resolve() == ("http://env:2", "env-token")
    assert config.resolve("http://arg:3", "arg-token") == ("http://arg:3", "arg-token")


def test_the_profile_is_private(tmp_path: Path) -> None:
    path = config.save_profile("http://x:1", "t0ken")
    assert path == tmp_path / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "http://x:1", "token": "t0ken"}
    assert config.load_profile() == config.Profile("http://x:1", "t0ken")


def test_an_existing_profile_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0o644)
    config.save_profile("http://x:1", "t0ken")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_unreadable_profile_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("not json")
    assert config.load_profile() == config.Profile()


def test_a_url_without_scheme_is_refused() -> None:
    with pytest.raises(ApiError, match="not a URL"):
        Client("localhost:8470", "t")


def test_a_slow_server_is_a_timeout_not_unreachable() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ApiError) as info:
        client(handler).list_jobs()
    assert info.value.code == "timeout"
    assert "did not answer" in str(info.value)
    assert len(calls) == 2  # a read is safe to repeat once
