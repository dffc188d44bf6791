"""Secrets on a real server: never in its logs, only hashed at rest, and not guessable online
(failed token checks are rate-limited per client address)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gpucloud.api.ratelimit import MAX_FAILURES, FailedAuthLimiter
from gpucloud.core.errors import RateLimited, Unauthenticated
from tests.servers import Server, kill_job_processes, start_server

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "data"
    running = start_server(data, None, "--simulate-gpus", "2xH100")
    yield running
    running.stop()
    kill_job_processes(data)


def test_tokens_are_never_logged_and_only_their_hashes_are_stored(server: Server) -> None:
    admin = {"Authorization": f"Bearer {server.token}"}
    secrets_seen = [server.token]
    with httpx.Client(base_url=server.url, timeout=20) as http:
        assert http.post("/v1/tenants", json={"name": "acme"}, headers=admin).status_code == 201
        user = http.post("/v1/users", json={"name": "ann", "tenant": "acme"}, headers=admin)
        assert user.status_code == 201, user.text
        ann = user.json()["token"]
        token = http.post(
            "/v1/tokens", json={"name": "ci"}, headers={"Authorization": f"Bearer {ann}"}
        )
        assert token.status_code == 201, token.text
        secrets_seen += [ann, token.json()["token"]]
        # Every path a secret takes: good and bad tokens, console sign-in, a bad console cookie.
        guess = ann[:-4] + "abcd"
        assert (
            http.get("/v1/whoami", headers={"Authorization": f"Bearer {guess}"}).status_code == 401
        )
        form = http.get("/login")
        signin = http.post(
            "/login", data={"token": ann, "csrf_token": _csrf(form.text)}, cookies=form.cookies
        )
        assert signin.status_code == 303, signin.text
        session_secret = signin.cookies["gpucloud_session"]
        secrets_seen.append(session_secret)
        assert http.get("/", cookies={"gpucloud_session": session_secret}).status_code == 200
        job = http.post(
            "/v1/jobs",
            headers={"Authorization": f"Bearer {ann}"},
            json={"command": ["sh", "-c", "env; echo $GPUCLOUD_TOKEN"], "gpus": 0, "cpus": 0.1},
        )
        assert job.status_code in (201, 402), job.text
    server.stop()

    log = server.log.read_text()
    stored = [p for p in server.data_dir.rglob("*") if p.is_file() and p.name != "admin.token"]
    assert any(p.name.startswith("gpucloud.db") for p in stored)
    blobs = {p: p.read_bytes() for p in stored}
    database = b"".join(b for p, b in blobs.items() if p.name.startswith("gpucloud.db"))
    for secret in secrets_seen:
        assert secret not in log, "a secret was written to the server's log"
        for path, blob in blobs.items():
            assert secret.encode() not in blob, f"a secret is stored in clear in {path}"
        # What is stored is the SHA-256 of the secret (256-bit random: no slow hash needed).
        assert hashlib.sha256(secret.encode()).hexdigest().encode() in database


def _csrf(page: str) -> str:
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def test_failed_token_checks_are_rate_limited_per_address(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as http:
        bad = {"Authorization": "Bearer not-a-real-token"}
        answers = [http.get("/v1/jobs", headers=bad).status_code for _ in range(MAX_FAILURES)]
        assert answers == [401] * MAX_FAILURES
        limited = http.get("/v1/jobs", headers=bad)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["code"] == "rate_limited"
        assert "too many failed token checks" in limited.json()["detail"]
        # While limited, even a valid token is refused: a guess that happens to be right
        # must not be told apart from a wrong one.
        good = {"Authorization": f"Bearer {server.token}"}
        assert http.get("/v1/jobs", headers=good).status_code == 429
        # The console's sign-in is the same door.
        assert http.post("/login", data={"token": "guess"}).status_code in (403, 429)
        # No token at all is not a guess: it is told what to send, not limited further.
        assert http.get("/v1/jobs").status_code == 401


def test_the_doors_into_instances_count_and_refuse_guesses_too(server: Server) -> None:
    """The Jupyter proxy (and the shell, which checks tokens the same way) is not a way
    around the limit: its guesses count, and a limited address is refused there."""
    with httpx.Client(base_url=server.url, timeout=20) as http:
        bad = {"Authorization": "Bearer not-a-real-token"}
        jupyter = "/v1/instances/no-such/jupyter/api/status"
        answers = [http.get(jupyter, headers=bad).status_code for _ in range(MAX_FAILURES)]
        assert answers == [401] * MAX_FAILURES
        assert http.get(jupyter, headers=bad).status_code == 429
        assert http.get("/v1/jobs", headers=bad).status_code == 429  # one count per address


def test_the_window_slides() -> None:
    now = [0.0]
    limiter = FailedAuthLimiter(max_failures=3, window_s=10, now=lambda: now[0])
    for _ in range(3):
        with pytest.raises(Unauthenticated), limiter.guard("10.0.0.1"):
            raise Unauthenticated("unknown token")
        now[0] += 1
    with pytest.raises(RateLimited) as info:
        limiter.check("10.0.0.1")
    assert info.value.retry_after_s == pytest.approx(7)
    limiter.check("10.0.0.2")  # another address is not affected
    now[0] = 10.5  # the first failure left the window: one more try is allowed
    limiter.check("10.0.0.1")
    with limiter.guard("10.0.0.1"):
        pass  # a success is not counted
    limiter.check("10.0.0.1")
