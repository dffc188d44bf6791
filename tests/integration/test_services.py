"""Inference services end to end: a real control plane (``gpucloud up``), replicas that are real
processes (examples/chat_server.py) on the local engine, real HTTP through the router.

Routing and access (another tenant: 404; a public key), streaming relayed as it is produced,
readiness taking a replica out and back, autoscaling up and down on generated load, scale to
zero and the cold first request, a rolling update with no failed request, and per
replica-second billing (on SQLite and PostgreSQL, with a manual clock)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gpucloud.controllers.context import Tunables
from gpucloud.core.states import Workload
from gpucloud.engines.discovery import local_nodes
from gpucloud.engines.local import LocalEngine
from gpucloud.store.db import Database
from gpucloud.store.models import Job
from tests.billing_api import bearer, priced_api, run_for, tenant
from tests.harness import Harness, make_harness
from tests.servers import Server, kill_job_processes, start_server

pytestmark = pytest.mark.slow
CHAT = str(Path(__file__).resolve().parents[2] / "examples" / "chat_server.py")
ASK = {"messages": [{"role": "user", "content": "one two three"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One control plane for the HTTP tests (each uses its own tenant): starting one is the
    slowest step."""
    data = tmp_path_factory.mktemp("services") / "data"
    plane = start_server(data, None, "--simulate-gpus", "4xH100")
    try:
        yield plane
    finally:
        plane.stop()
        kill_job_processes(data)


def client(server: Server, token: str | None = None) -> httpx.Client:
    headers = bearer(token) if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=90)


def new_tenant(server: Server, name: str) -> str:
    admin = client(server, server.token)
    admin.post("/v1/tenants", json={"name": name}).raise_for_status()
    user = admin.post("/v1/users", json={"name": f"{name}-u", "tenant": name})
    user.raise_for_status()
    admin.post("/v1/admin/topups", json={"tenant": name, "amount": "100000",
                                         "ref": "t"}).raise_for_status()
    token: str = user.json()["token"]
    return token


def create(api: httpx.Client, name: str, env: dict[str, str] | None = None,
           **extra: Any) -> dict[str, Any]:
    body = {"name": name, "command": [sys.executable, CHAT], "gpus": 0, "cpus": 0.2,
            "memory": "256M", "env": env or {}, "min_replicas": 1, **extra}
    answer = api.post("/v1/services", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def wait(probe: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def show(api: httpx.Client, name: str) -> dict[str, Any]:
    answer = api.get(f"/v1/services/{name}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def ready(api: httpx.Client, name: str, n: int) -> dict[str, Any]:
    def enough() -> dict[str, Any] | None:
        current = show(api, name)
        return current if current["ready_replicas"] == n else None

    found: dict[str, Any] = wait(enough, f"{n} ready replicas of {name}")
    return found


class Load:
    """``workers`` threads sending requests through the route until stopped; counts failures."""

    def __init__(self, url: str, token: str, workers: int) -> None:
        self.ok = 0
        self.failures: list[str] = []
        self.fingerprints: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(url, token), daemon=True)
                         for _ in range(workers)]
        for thread in self._threads:
            thread.start()

    def _run(self, url: str, token: str) -> None:
        with httpx.Client(headers=bearer(token), timeout=90) as http:
            while not self._stop.is_set():
                try:
                    answer = http.post(url, json=ASK)
                except httpx.HTTPError as err:
                    self.failures.append(repr(err))
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                else:
                    self.ok += 1
                    self.fingerprints.append(answer.json()["system_fingerprint"])

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def test_routing_access_and_streaming(server: Server) -> None:
    mine, theirs = new_tenant(server, "lab"), new_tenant(server, "other")
    api = client(server, mine)
    create(api, "chat", env={"CHAT_DELAY_S": "0.3"})
    ready(api, "chat", 1)
    route = "/s/lab/chat/v1/chat/completions"

    answer = api.post(route, json=ASK)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "one two three"
    # Another tenant's token, an unknown service, no token: nothing is revealed.
    assert client(server, theirs).post(route, json=ASK).status_code == 404
    assert client(server, theirs).get("/v1/services/chat").status_code == 404
    assert api.post("/s/lab/nope/v1/chat/completions", json=ASK).status_code == 404
    assert client(server).post(route, json=ASK).status_code == 401

    # Public with its own key: callers without an account get in; revoked, they do not.
    key = api.post("/v1/services/chat/key")
    assert key.status_code == 200, key.text
    secret = key.json()["key"]
    assert client(server, secret).post(route, json=ASK).status_code == 200
    api.delete("/v1/services/chat/key").raise_for_status()
    time.sleep(0.6)  # the router's view of a service is at most 0.5 s old
    assert client(server, secret).post(route, json=ASK).status_code == 401

    # Streaming: each word's event arrives as the replica sends it (0.3 s apart), not at
    # the end of the response.
    arrivals: list[float] = []
    body = {**ASK, "stream": True}
    with api.stream("POST", route, json=body) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 6  # role, three words, stop, [DONE]
    assert arrivals[-1] - arrivals[1] >= 0.5, "the stream was buffered"
    assert arrivals[2] - arrivals[1] >= 0.2


def test_readiness_takes_a_replica_out_and_back(server: Server, tmp_path: Path) -> None:
    api = client(server, new_tenant(server, "rdy"))
    broken = tmp_path / "broken-{port}"
    create(api, "chat", env={"CHAT_BROKEN_FILE": str(broken)}, min_replicas=2, max_replicas=2)
    shown = ready(api, "chat", 2)
    ports = sorted(str(r["port"]) for r in shown["replicas"])
    route = "/s/rdy/chat/v1/chat/completions"

    def served_by(n: int) -> set[str]:
        return {api.post(route, json=ASK).headers["x-served-by"] for _ in range(n)}

    assert served_by(20) == set(ports)
    Path(str(broken).replace("{port}", ports[0])).touch()
    out = ready(api, "chat", 1)
    assert [r["state"] for r in out["replicas"] if str(r["port"]) == ports[0]] == ["UNREADY"]
    time.sleep(0.6)  # the router's READY set is at most 0.5 s old
    assert served_by(20) == {ports[1]}
    Path(str(broken).replace("{port}", ports[0])).unlink()
    ready(api, "chat", 2)
    time.sleep(0.6)
    assert served_by(30) == set(ports)


def test_autoscale_up_down_to_zero_and_a_cold_request(server: Server) -> None:
    token = new_tenant(server, "auto")
    api = client(server, token)
    create(api, "chat", env={"CHAT_DELAY_S": "0.2"}, min_replicas=0, max_replicas=3,
           target_concurrency=1.5, stabilization="3s", scale_to_zero="6s")
    ready(api, "chat", 1)
    load = Load(f"{server.url}/s/auto/chat/v1/chat/completions", token, workers=5)
    try:
        up = wait(lambda: show(api, "chat")["ready_replicas"] >= 3 or None,
                  "a scale-up to 3 replicas under load", timeout_s=30)
        assert up
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]
    # No load: down after the stabilisation window, then to zero after the idle time.
    wait(lambda: show(api, "chat")["state"] == "IDLE", "scale to zero", timeout_s=40)
    idle = show(api, "chat")
    assert idle["desired_replicas"] == 0 and idle["replicas"] == []
    scaled = [e["message"] for e in idle["events"] if e["kind"] == "service.scaled"]
    assert any("-> 0 replicas" in m for m in scaled), scaled
    # The first request after scale-to-zero waits for a replica and is served.
    cold = api.post("/s/auto/chat/v1/chat/completions", json=ASK)
    assert cold.status_code == 200, cold.text
    assert show(api, "chat")["state"] == "RUNNING"


def test_a_rolling_update_under_load_fails_no_request(server: Server) -> None:
    token = new_tenant(server, "roll")
    api = client(server, token)
    create(api, "chat", env={"CHAT_VERSION": "v1", "CHAT_DELAY_S": "0.05"}, min_replicas=2,
           max_replicas=2)
    ready(api, "chat", 2)
    load = Load(f"{server.url}/s/roll/chat/v1/chat/completions", token, workers=4)
    try:
        time.sleep(1)
        change = api.patch("/v1/services/chat", json={"env": {"CHAT_VERSION": "v2",
                                                              "CHAT_DELAY_S": "0.05"}})
        assert change.status_code == 200, change.text
        assert change.json()["generation"] == 2

        def rolled() -> bool:
            current = show(api, "chat")
            return (current["ready_replicas"] == 2 and len(current["replicas"]) == 2
                    and all(r["generation"] == 2 for r in current["replicas"]))

        wait(rolled, "the rollout to v2", timeout_s=60)
        time.sleep(1)
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]
    assert load.ok > 50
    assert load.fingerprints[0] == "v1" and load.fingerprints[-1] == "v2"
    # Never fewer than two ready replicas: each old one was drained after a new one was READY.
    events = show(api, "chat")["events"]
    drained = [e for e in events if e["after"] == "DRAINING"]
    assert len(drained) == 2


# --- billing: per replica-second, with a manual clock, on both databases ----------------------


@pytest.fixture
def h(db: Database, tmp_path: Path) -> Iterator[Harness]:
    data = tmp_path / "data"
    engine = LocalEngine(data, local_nodes("2xH100")[0])
    yield make_harness(db, engine, tunables=Tunables(  # type: ignore[arg-type]
        stop_grace_s=2, inventory_interval_s=0, node_silence_s=0))
    kill_job_processes(data)


def test_replicas_are_billed_per_replica_second(h: Harness) -> None:
    api = priced_api(h)  # H100 at 3600 an hour: 1.00 a second
    token = tenant(api, h, "bill", "100000")
    body = {"name": "chat", "command": [sys.executable, CHAT], "gpus": 1, "gpu_type": "H100",
            "cpus": 0.2, "memory": "256M", "min_replicas": 2, "max_replicas": 2}
    created = api.post("/v1/services", headers=bearer(token), json=body)
    assert created.status_code == 201, created.text
    assert created.json()["price_per_replica_hour_minor"] == 360000

    def both_ready() -> bool:
        run_for(h, 1)
        shown = api.get("/v1/services/chat", headers=bearer(token)).json()
        return bool(shown["ready_replicas"] == 2)

    wait(both_ready, "two ready replicas")
    before = {r["job_id"]: r["cost_minor"] for r in _usage(api, token)}
    run_for(h, 10)
    rows = [r for r in _usage(api, token) if r["kind"] == Workload.SERVICE_REPLICA.value]
    assert len(rows) == 2 and {r["ref_id"] for r in rows} == {created.json()["id"]}
    for row in rows:  # 10 more seconds of one H100 each, at 1.00 a second
        assert row["cost_minor"] - before.get(row["job_id"], 0) == 10 * 100, row
    with h.ctx.db.read() as session:
        jobs = list(session.scalars(select(Job).where(Job.owner_id == created.json()["id"])))
        assert {j.workload for j in jobs} == {Workload.SERVICE_REPLICA}
    # Deleted: the replicas stop, billing stops, the service ends DELETED.
    api.delete("/v1/services/chat", headers=bearer(token)).raise_for_status()
    def deleted() -> bool:
        run_for(h, 1)
        listed = api.get("/v1/services?deleted=true", headers=bearer(token)).json()["items"]
        return bool(listed[0]["state"] == "DELETED")

    wait(deleted, "the delete")
    settled = {r["job_id"]: r["cost_minor"] for r in _usage(api, token)}
    run_for(h, 3)
    assert {r["job_id"]: r["cost_minor"] for r in _usage(api, token)} == settled


def _usage(api: Any, token: str) -> list[dict[str, Any]]:
    answer = api.get("/v1/usage", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()
    return rows


def test_a_control_plane_restart_keeps_the_replicas(h: Harness) -> None:
    """Level-triggered: new controllers over the same database adopt the running replicas
    (no new one started, none stopped), even with their traffic history lost."""
    api = priced_api(h)
    token = tenant(api, h, "sturdy", "100000")
    body = {"name": "chat", "command": [sys.executable, CHAT], "gpus": 0, "cpus": 0.2,
            "memory": "256M", "min_replicas": 0, "max_replicas": 3, "target_rps": 5,
            "stabilization": "10m", "scale_to_zero": "1h"}
    assert api.post("/v1/services", headers=bearer(token), json=body).status_code == 201

    def shown(plane: Harness) -> dict[str, Any]:
        plane.settle(1)
        data: dict[str, Any] = plane.api().get("/v1/services/chat", headers=bearer(token)).json()
        return data

    before = wait(lambda: (s := shown(h))["ready_replicas"] == 1 and s, "a ready replica")
    restarted = h.restart()
    for _ in range(5):
        after = shown(restarted)
    assert [r["id"] for r in after["replicas"]] == [r["id"] for r in before["replicas"]]
    assert (after["state"], after["ready_replicas"], after["desired_replicas"]) == (
        "RUNNING", 1, 1)
