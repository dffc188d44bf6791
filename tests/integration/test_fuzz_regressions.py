"""What schemathesis found (tests/fuzz), each kept as a test: a 4xx that says what to fix, never
a 500, and nothing changed. Run on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from gpucloud.engines.logfile import read_output
from gpucloud.store.db import Database
from tests.billing_api import bearer
from tests.harness import Harness, make_harness


@pytest.fixture
def h(db: Database) -> Harness:
    return make_harness(db)


@pytest.fixture
def api(h: Harness) -> TestClient:
    return h.api()


def assert_problem(response: httpx.Response, status: int, field: str, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert field in body["detail"], body
    for word in words:
        assert word in body["detail"], body


def test_integer_cursor_no_page_returned_is_422(api: TestClient, h: Harness) -> None:
    """A non-numeric (or out of BIGINT range) cursor on a list keyed by an integer was a 500."""
    for cursor in ("abc", "-1", "1e3", str(2**63), "9" * 40):
        for path in ("/v1/events", "/v1/faults"):
            got = api.get(path, params={"cursor": cursor}, headers=bearer(h.admin_token))
            assert_problem(got, 422, "cursor", "next_cursor")


def test_integer_cursor_a_page_returned_still_works(api: TestClient, h: Harness) -> None:
    admin = bearer(h.admin_token)
    for _ in range(3):
        api.post("/v1/jobs", json={"command": ["true"], "gpus": 1}, headers=admin
                 ).raise_for_status()
    h.settle()
    first = api.get("/v1/events", params={"limit": 1}, headers=admin)
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    assert cursor is not None and cursor.isdigit()
    second = api.get("/v1/events", params={"limit": 1, "cursor": cursor}, headers=admin)
    assert second.status_code == 200, second.text
    assert second.json()["items"][0]["id"] != first.json()["items"][0]["id"]


def test_token_lifetime_past_the_calendar_is_422_and_issues_nothing(
    api: TestClient, h: Harness
) -> None:
    """expires_in_s of 144928935448333984 overflowed the expiry datetime: a 500."""
    admin = bearer(h.admin_token)
    before = api.get("/v1/tokens", headers=admin).json()["items"]
    got = api.post("/v1/tokens", json={"name": "long", "expires_in_s": 144928935448333984},
                   headers=admin)
    assert_problem(got, 422, "expires_in_s")
    assert api.get("/v1/tokens", headers=admin).json()["items"] == before
    century = api.post("/v1/tokens", json={"name": "century", "expires_in_s": 100 * 365 * 86400},
                       headers=admin)
    assert century.status_code == 201, century.text


def test_log_offset_past_a_bigint_is_422(api: TestClient, h: Harness) -> None:
    """offset=16220816769492807680 broke the log stream mid-response (a 500 after the headers)."""
    job = api.post("/v1/jobs", json={"command": ["true"], "gpus": 1}, headers=bearer(h.admin_token))
    assert job.status_code == 201, job.text
    got = api.get(f"/v1/jobs/{job.json()['id']}/logs", params={"offset": str(2**64 - 1)},
                  headers=bearer(h.admin_token))
    assert_problem(got, 422, "offset")


@pytest.mark.parametrize("offset", [2**63 - 2, 2**62, 2**50])
def test_log_offset_past_what_the_file_system_holds_reads_nothing(
    tmp_path: Path, offset: int
) -> None:
    """An offset a file system cannot seek to (EINVAL) was a 500 mid-stream: it reads as empty,
    and the stream ends (with follow too: nothing can ever be written there)."""
    output = tmp_path / "output.log"
    output.write_bytes(b"hello\n")
    assert list(read_output(output, offset, follow=False, ended=lambda: True)) == []
    # Where the file system can seek that far, following reads nothing until the run ends.
    ended = iter([False, True, True]).__next__
    assert list(read_output(output, offset, follow=True, ended=ended)) == []
    assert b"".join(read_output(output, 2, follow=False, ended=lambda: True)) == b"llo\n"


def test_idle_policy_durations_past_a_32_bit_column_are_422(api: TestClient, h: Harness) -> None:
    """idle_s 802854564298 / grace_s 14247392139607425024 overflowed the INTEGER columns: a 500."""
    admin = bearer(h.admin_token)
    api.post("/v1/tenants", json={"name": "idle"}, headers=admin).raise_for_status()
    for body, field in (({"idle_s": 802854564298}, "idle_s"),
                        ({"idle_s": 3600, "grace_s": 14247392139607425024}, "grace_s")):
        got = api.put("/v1/instance-idle-policy", params={"tenant": "idle"}, json=body,
                      headers=admin)
        assert_problem(got, 422, field)
    assert api.get("/v1/instance-idle-policy", params={"tenant": "idle"},
                   headers=admin).status_code == 404  # nothing was stored
    ok = api.put("/v1/instance-idle-policy", params={"tenant": "idle"},
                 json={"idle": "30m", "grace": "5m"}, headers=admin)
    assert ok.status_code == 200, ok.text
