"""Database faults: PostgreSQL away or its connections killed mid-request. Callers get a
retryable 503 (never a 500 with a traceback), the controllers back off and retry, the SDK
retries what is safe to resend, and the state converges once the database is back."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gpucloud.client import Client
from gpucloud.controllers.runtime import MAX_BACKOFF_S, ControlLoop
from gpucloud.store import migrate
from gpucloud.store.db import DATABASE_UNAVAILABLE, Database
from tests.conftest import PG_ADMIN_URL
from tests.integration.test_crash_recovery import wait_for
from tests.servers import Server, kill_job_processes, start_server
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
OK = {200, 201, 202}


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    upstream = make_url(PG_ADMIN_URL)
    tcp = TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432)
    yield tcp
    tcp.close()


def via(url: str, proxy: TcpProxy) -> str:
    return (
        make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )


@pytest.fixture
def server(tmp_path: Path, pg_url: str, proxy: TcpProxy) -> Iterator[Server]:
    data = tmp_path / "data"
    running = start_server(
        data, None, "--simulate-gpus", "8xH100", "--database-url", via(pg_url, proxy)
    )
    yield running
    running.stop()
    kill_job_processes(data)


def submit_body(seconds: float = 0.2) -> dict[str, Any]:
    return {"command": ["sh", "-c", f"sleep {seconds}"], "gpus": 1, "cpus": 0.1}


def assert_retryable_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert float(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["code"] == "database_unavailable"
    assert "retry" in body["detail"]
    assert "Traceback" not in response.text


def test_a_dropped_transaction_raises_a_retryable_type(pg_url: str) -> None:
    """The fault is a type the API and controllers recognise, whatever psycopg says."""
    db = Database(pg_url)
    migrate.upgrade(db)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with pytest.raises(DATABASE_UNAVAILABLE), db.write() as session:
            pid = session.execute(text("select pg_backend_pid()")).scalar_one()
            with admin.connect() as conn:
                conn.execute(text("select pg_terminate_backend(:p)"), {"p": pid})
            session.execute(text("select 1"))
        # The pool threw the dead connection away: the next transaction just works.
        with db.read() as session:
            assert session.execute(text("select 1")).scalar_one() == 1
    finally:
        admin.dispose()
        db.dispose()


def test_outage_answers_503_then_everything_converges(server: Server, proxy: TcpProxy) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=20) as http:
        before = http.post("/v1/jobs", json=submit_body())
        assert before.status_code == 201, before.text

        proxy.cut()  # PostgreSQL "restarts": connections dropped, new ones refused
        assert_retryable_503(http.get("/v1/jobs"))
        assert_retryable_503(http.get(f"/v1/jobs/{before.json()['id']}"))
        key = str(uuid.uuid4())
        assert_retryable_503(
            http.post("/v1/jobs", json=submit_body(), headers={"Idempotency-Key": key})
        )
        assert http.get("/healthz").status_code == 200  # the process itself is fine

        # The SDK resends what is safe (keyed by an Idempotency-Key) while the database is
        # away: started during the outage, it succeeds once the database is back.
        outcome: dict[str, Any] = {}

        def sdk_submit() -> None:
            with Client(server.url, server.token) as client:
                try:
                    outcome["job"] = client.submit_job(submit_body(), idempotency_key=key)
                except Exception as err:  # recorded, asserted below
                    outcome["error"] = err

        thread = threading.Thread(target=sdk_submit)
        thread.start()
        time.sleep(2.5)  # several failing controller passes and SDK attempts
        proxy.restore()
        thread.join(30)
        assert "error" not in outcome, outcome
        retried = outcome["job"]

        # Everything converges: the job from before, and the one the SDK got through once.
        def succeeded(job_id: str) -> bool:
            return bool(http.get(f"/v1/jobs/{job_id}").json()["state"] == "SUCCEEDED")

        for job_id in (before.json()["id"], retried.id):
            wait_for(partial(succeeded, job_id), 60, f"{job_id} to succeed after the outage")
        listed = http.get("/v1/jobs", params={"limit": 500}).json()["items"]
        assert len(listed) == 2  # the 503'd POST and its SDK resend made one job, not two

    log = server.log.read_text()
    assert "database unavailable" in log  # the controllers and the API said why, once a line
    assert "Traceback" not in log
    assert "unhandled error" not in log


def test_connections_killed_under_load_never_give_a_500(server: Server, pg_url: str) -> None:
    """pg_terminate_backend on every connection of the server, every few milliseconds, while
    clients read and write: each answer is a success or a retryable 503."""
    database = make_url(pg_url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    stop = threading.Event()
    killed = [0]
    statuses: list[int] = []
    bad: list[str] = []
    headers = {"Authorization": f"Bearer {server.token}"}

    def killer() -> None:
        with admin.connect() as conn:
            while not stop.is_set():
                killed[0] += conn.execute(
                    text(
                        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                        "where datname = :d and pid <> pg_backend_pid()"
                    ),
                    {"d": database},
                ).scalar_one()
                time.sleep(0.05)

    def worker(n: int) -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=20) as http:
            i = 0
            while not stop.is_set():
                i += 1
                if i % 3 == 0:
                    key = {"Idempotency-Key": f"w{n}-{i}"}
                    response = http.post("/v1/jobs", json=submit_body(0), headers=key)
                else:
                    response = http.get("/v1/jobs" if i % 2 else "/v1/nodes")
                statuses.append(response.status_code)
                if response.status_code == 503:
                    try:
                        assert_retryable_503(response)
                    except AssertionError as err:
                        bad.append(str(err))
                elif response.status_code not in OK:
                    bad.append(f"{response.status_code}: {response.text[:300]}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    kill_thread = threading.Thread(target=killer)
    for thread in [*threads, kill_thread]:
        thread.start()
    time.sleep(5)
    stop.set()
    for thread in [*threads, kill_thread]:
        thread.join(30)
    admin.dispose()
    assert killed[0] > 0, "the killer never found a connection to terminate"
    assert statuses, "no request completed"
    assert not bad, bad[:5]
    print(
        f"{len(statuses)} requests, {statuses.count(503)} retryable 503s, "
        f"{killed[0]} connections killed"
    )
    # Afterwards the server serves normally again, and every job it accepted is run.
    with httpx.Client(base_url=server.url, headers=headers, timeout=20) as http:
        assert http.get("/v1/jobs").status_code == 200

        def all_ended() -> bool:
            items = http.get("/v1/jobs", params={"limit": 500}).json()["items"]
            return all(j["state"] in {"SUCCEEDED", "FAILED"} for j in items)

        wait_for(all_ended, timeout_s=90, what="every accepted job to end")
    assert "Traceback" not in server.log.read_text()


class _Unavailable:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def reconcile_once(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise DATABASE_UNAVAILABLE[0]("select 1", {}, Exception("connection refused"))


def test_controllers_back_off_while_the_database_is_away_and_reset_after() -> None:
    flaky = _Unavailable(failures=6)
    loop = ControlLoop([flaky], tick_s=0.5)
    waits = []
    for _ in range(8):
        loop.run_pass()
        waits.append(loop.next_wait_s())
    assert waits[:6] == [1.0, 2.0, 4.0, MAX_BACKOFF_S, MAX_BACKOFF_S, MAX_BACKOFF_S]
    assert waits[6:] == [0.5, 0.5]  # the database is back: the normal tick again
