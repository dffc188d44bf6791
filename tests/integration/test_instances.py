"""Interactive GPU instances on the real local engine (real processes, files, ptys) and a real
database: the lifecycle, the disk kept across stop and start, no-GPU mode and its price, idle
reclamation, the shell over a websocket, tenancy, and a control-plane restart."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.testclient import WebSocketDenialResponse

from gpucloud.core.states import Workload
from gpucloud.store.db import Database
from gpucloud.store.models import DeviceClaim, Job, MeteredLease
from tests.billing_api import bearer, priced_api, tenant, wallet
from tests.harness import Harness, local_engine_harness
from tests.servers import kill_job_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    kill_job_processes(path)


@pytest.fixture
def h(db: Database, data_dir: Path) -> Harness:
    return local_engine_harness(db, data_dir, "8xH100", stop_grace_s=2)


def until(h: Harness, probe: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    """Run passes of the real controllers until ``probe`` is truthy (processes take time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        h.settle(1)
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def show(api: TestClient, token: str, ref: str) -> dict[str, Any]:
    response = api.get(f"/v1/instances/{ref}", headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def in_state(h: Harness, api: TestClient, token: str, ref: str, state: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        current = show(api, token, ref)
        return current if current["state"] == state else None

    found: dict[str, Any] = until(h, reached, f"instance {ref} {state}")
    return found


def create(api: TestClient, token: str, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/instances", headers=bearer(token),
                        json={"cpus": 0.5, "memory": "512M", **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def run_in_shell(api: TestClient, token: str, ref: str, script: str) -> tuple[str, int]:
    """Type ``script`` into the instance's shell, then ``exit``; its output and exit code."""
    output = b""
    with api.websocket_connect(f"/v1/instances/{ref}/shell", headers=bearer(token)) as ws:
        ws.send_bytes(f"{script}\nexit\n".encode())
        while True:
            message = ws.receive()
            if message.get("bytes"):
                output += message["bytes"]
            elif message.get("text"):
                control = json.loads(message["text"])
                assert "exit" in control, control
                return output.decode(errors="replace"), int(control["exit"])
            elif message["type"] == "websocket.close":
                raise AssertionError(f"closed without an exit code: {output!r}")


def claims(h: Harness, job_id: str) -> int:
    with h.ctx.db.read() as session:
        from gpucloud.store.models import Allocation

        return len(list(session.scalars(
            select(DeviceClaim).join(Allocation, Allocation.id == DeviceClaim.allocation_id)
            .where(Allocation.job_id == job_id))))


def test_stop_releases_gpus_keeps_files_and_start_brings_them_back(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "lab", "100000")
    created = create(api, token, name="dev", gpus=2, gpu_type="H100", disk="20G")
    assert (created["state"], created["disk_gib"]) == ("PENDING", 20)
    running = in_state(h, api, token, "dev", "RUNNING")
    first_job = running["job_id"]
    assert len(running["devices"]) == 2
    with h.ctx.db.read() as session:
        job = session.get_one(Job, first_job)
        assert (job.workload, job.owner_id, job.gpus) == (Workload.INSTANCE, created["id"], 2)

    out, code = run_in_shell(api, token, "dev",
                             'echo "gpus=$CUDA_VISIBLE_DEVICES"; echo kept > ~/notes.txt; pwd')
    assert code == 0
    assert "gpus=" + ",".join(str(int(d.rsplit("gpu", 1)[1])) for d in running["devices"]) in out
    home = Path(h.engine.data_dir) / "instances" / created["id"] / "home"  # type: ignore[attr-defined]
    assert str(home) in out
    assert (home / "notes.txt").read_text() == "kept\n"

    stopping = api.post("/v1/instances/dev/stop", headers=bearer(token))
    assert stopping.status_code == 200, stopping.text
    stopped = in_state(h, api, token, "dev", "STOPPED")
    assert stopped["job_id"] is None and stopped["devices"] == []
    assert claims(h, first_job) == 0, "a stopped instance still holds GPUs"
    with h.ctx.db.read() as session:
        assert session.get_one(Job, first_job).state.value == "CANCELLED"
        lease = session.scalar(select(MeteredLease).where(
            MeteredLease.ref_id == created["id"], MeteredLease.ended_at.is_(None)))
        assert lease is not None and (lease.kind, lease.quantity) == ("storage", 20)
    assert (home / "notes.txt").read_text() == "kept\n"
    # Stopped: its price is the disk's (storage per GiB-month, per hour), not the GPUs'.
    assert stopped["price_per_hour_minor"] < running["price_per_hour_minor"]

    assert api.post("/v1/instances/dev/start", headers=bearer(token)).status_code == 200
    again = in_state(h, api, token, "dev", "RUNNING")
    assert again["job_id"] != first_job and len(again["devices"]) == 2 and again["runs"] == 2
    out, code = run_in_shell(api, token, "dev", "cat ~/notes.txt")
    assert code == 0 and "kept" in out
    with h.ctx.db.read() as session:
        assert session.scalar(select(MeteredLease).where(
            MeteredLease.ref_id == created["id"], MeteredLease.ended_at.is_(None))) is None

    # Starting a running instance is refused and changes nothing.
    refused = api.post("/v1/instances/dev/start", headers=bearer(token))
    assert refused.status_code == 409 and "stop it first" in refused.json()["detail"]

    assert api.delete("/v1/instances/dev", headers=bearer(token)).status_code == 200
    until(h, lambda: not home.exists(), "the deleted instance's disk to be freed")
    assert api.get("/v1/instances/dev", headers=bearer(token)).status_code == 404
    # The name can be used again.
    create(api, token, name="dev", gpus=1)


def test_no_gpu_mode_is_billed_at_the_cpu_price(h: Harness) -> None:
    api = priced_api(h)
    api.post("/v1/prices", headers=bearer(h.admin_token), json={
        "cpu_core_hour": "36", "storage_gib_month": "0"}).raise_for_status()  # 0.01 a CPU-s
    token = tenant(api, h, "cpu", "1000")
    create(api, token, name="edit", gpus=4, gpu_type="H100", cpus=2)
    first = in_state(h, api, token, "edit", "RUNNING")
    assert first["price_per_hour_minor"] == 4 * 360000 + 2 * 3600
    api.post("/v1/instances/edit/stop", headers=bearer(token)).raise_for_status()
    in_state(h, api, token, "edit", "STOPPED")

    started = api.post("/v1/instances/edit/start", headers=bearer(token), json={"no_gpu": True})
    assert started.status_code == 200, started.text
    cpu_only = in_state(h, api, token, "edit", "RUNNING")
    assert cpu_only["no_gpu"] and cpu_only["devices"] == []
    assert cpu_only["price_per_hour_minor"] == 2 * 3600  # 2 CPUs at 36.00 an hour each
    out, _ = run_in_shell(api, token, "edit", 'echo "[$CUDA_VISIBLE_DEVICES]"')
    assert "[]" in out
    before = wallet(api, token)["balance_minor"]
    for _ in range(30):
        h.clock.advance(1)
        h.settle(1)
    api.post("/v1/instances/edit/stop", headers=bearer(token)).raise_for_status()
    in_state(h, api, token, "edit", "STOPPED")
    h.settle(3)
    charged = before - wallet(api, token)["balance_minor"]
    # 2 CPUs x 0.01 per CPU-second: 2 minor units a second for the 30 seconds it ran
    assert charged == 60, charged
    with h.ctx.db.read() as session:
        job = session.get_one(Job, cpu_only["job_id"])
        assert job.gpus == 0


def test_idle_policy_warns_then_switches_to_no_gpu_and_shows_the_saving(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "idle", "100000")
    users = api.get("/v1/users", headers=bearer(h.admin_token)).json()["items"]
    assert any(u["name"] == "idle-u" for u in users)
    policy = api.put("/v1/instance-idle-policy?tenant=idle", headers=bearer(h.admin_token),
                     json={"below_pct": 10, "idle": "2m", "grace": "1m", "action": "no-gpu"})
    assert policy.status_code == 200, policy.text
    create(api, token, name="nb", gpus=2, gpu_type="H100")
    in_state(h, api, token, "nb", "RUNNING")

    def report(pct: int) -> None:
        answer = api.post("/v1/instances/nb/utilization", headers=bearer(token),
                          json={"gpu_util_pct": pct})
        assert answer.status_code == 200, answer.text

    def events(kind: str) -> list[dict[str, Any]]:
        return [e for e in show(api, token, "nb")["events"] if e["kind"] == kind]

    report(90)
    h.clock.advance(600)
    h.settle(2)
    assert not events("instance.idle_warning"), "a busy instance was warned"
    report(3)
    h.settle(1)
    h.clock.advance(119)
    h.settle(1)
    assert not events("instance.idle_warning")
    h.clock.advance(2)
    h.settle(1)
    warnings = events("instance.idle_warning")
    assert len(warnings) == 1 and "no-GPU mode in 1 min" in warnings[0]["message"]
    h.clock.advance(61)
    h.settle(1)
    assert events("instance.reclaimed"), "not reclaimed after the grace"
    reclaimed = in_state(h, api, token, "nb", "RUNNING")
    assert reclaimed["no_gpu"] and reclaimed["devices"] == []
    assert reclaimed["runs"] == 2
    # Saving: 2 H100 at 3600.00 an hour, less the (free) CPU run: 2 x 360000 minor an hour.
    h.clock.advance(1800)
    later = show(api, token, "nb")
    assert later["saved_minor"] == 2 * 360000 // 2
    assert later["saved_seconds"] >= 1800
    # The user starts it with GPUs again: the saving is closed and kept.
    api.post("/v1/instances/nb/stop", headers=bearer(token)).raise_for_status()
    stopped = in_state(h, api, token, "nb", "STOPPED")
    assert stopped["saved_minor"] >= 360000


def test_another_tenant_cannot_see_or_enter_an_instance(h: Harness) -> None:
    api = priced_api(h)
    mine = tenant(api, h, "owner", "100000")
    theirs = tenant(api, h, "other", "100000")
    created = create(api, mine, name="secret", gpus=1)
    in_state(h, api, mine, "secret", "RUNNING")
    for ref in ("secret", created["id"]):
        assert api.get(f"/v1/instances/{ref}", headers=bearer(theirs)).status_code == 404
        assert api.post(f"/v1/instances/{ref}/stop", headers=bearer(theirs)).status_code == 404
        assert api.get(f"/v1/instances/{ref}/jupyter/api/status",
                       headers=bearer(theirs)).status_code == 404
        with pytest.raises(WebSocketDenialResponse) as denied, api.websocket_connect(
                f"/v1/instances/{ref}/shell", headers=bearer(theirs)):
            pass
        assert denied.value.status_code == 404
    with pytest.raises(WebSocketDenialResponse) as anonymous, api.websocket_connect(
            f"/v1/instances/{created['id']}/shell"):
        pass
    assert anonymous.value.status_code == 401
    assert show(api, mine, "secret")["state"] == "RUNNING"
    assert [i["name"] for i in api.get("/v1/instances", headers=bearer(theirs)).json()[
        "items"]] == []


def test_bad_requests_are_refused_with_what_to_fix(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "bad", "100000")
    cases = [
        ({"gpus": 9, "gpu_type": "H100"}, "never fit"),
        ({"gpus": 1, "gpu_type": "NOPE"}, "NOPE"),
        ({"gpus": 1, "disk": "lots"}, "not a size"),
        ({"gpus": 1, "name": "Bad Name"}, "lower-case"),
    ]
    for body, words in cases:
        answer = api.post("/v1/instances", headers=bearer(token), json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert words in answer.json()["detail"], (body, answer.json()["detail"])
    create(api, token, name="one", gpus=1)
    taken = api.post("/v1/instances", headers=bearer(token), json={"name": "one", "gpus": 1})
    assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
    assert len(api.get("/v1/instances", headers=bearer(token)).json()["items"]) == 1


def test_a_control_plane_restart_keeps_the_instance_running(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "sturdy", "100000")
    create(api, token, name="long", gpus=1)
    before = in_state(h, api, token, "long", "RUNNING")
    run_in_shell(api, token, "long", "echo $$ > ~/before")
    restarted = h.restart()
    api2 = restarted.api()
    restarted.settle(5)
    after = show(api2, token, "long")
    assert (after["state"], after["job_id"], after["runs"]) == ("RUNNING", before["job_id"], 1)
    out, code = run_in_shell(api2, token, "long", "test -f ~/before && echo still-here")
    assert code == 0 and "still-here" in out
