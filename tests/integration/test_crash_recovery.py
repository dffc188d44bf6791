"""kill -9 of the control plane mid-run: nothing lost, nothing run twice, nothing leaked."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import Server, free_port, kill_job_processes, start_server

pytestmark = pytest.mark.slow
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}

# Each run appends a line to a file in its checkpoint dir, so a second run would show; the job
# then waits for a gate file the test creates, so it is certainly running across the restart.
GATED = (
    'echo "run $GPUCLOUD_RESTART_COUNT on $CUDA_VISIBLE_DEVICES"'
    ' >> "$GPUCLOUD_CHECKPOINT_DIR/runs";'
    ' while [ ! -f "$GPUCLOUD_CHECKPOINT_DIR/go" ]; do sleep 0.1; done; exit 5'
)
QUICK = 'echo "run" >> "$GPUCLOUD_CHECKPOINT_DIR/runs"; sleep 1'


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    kill_job_processes(path)


def api(server: Server, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _ended(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    current = job(client, job_id)
    return current if current["state"] in TERMINAL else None


def test_kill9_mid_run_loses_nothing_and_runs_nothing_twice(data_dir: Path) -> None:
    port = free_port()
    first = start_server(data_dir, port, "--simulate-gpus", "8xH100", "--stop-grace-s", "2")
    token = first.token
    try:
        with api(first, token) as client:

            def submit(command: str, gpus: int) -> str:
                response = client.post(
                    "/v1/jobs", json={"command": ["sh", "-c", command], "gpus": gpus, "cpus": 0.2}
                )
                assert response.status_code == 201, response.text
                job_id: str = response.json()["id"]
                return job_id

            gated = submit(GATED, 4)
            quick = submit(QUICK, 4)
            big = submit(QUICK, 8)  # waits for both to finish
            wait_for(lambda: job(client, gated)["state"] == "RUNNING", what="gated job running")
            wait_for(
                lambda: (
                    job(client, big)["state"] == "QUEUED"
                    and "too few free GPUs" in job(client, big)["message"]
                ),
                what="big waits",
            )
        first.kill9()
    except BaseException:
        first.stop()
        raise

    checkpoint = data_dir / "jobs" / gated / "checkpoint"
    assert checkpoint.joinpath("runs").read_text().count("run") == 1
    # The job keeps running while no control plane exists.
    second = start_server(data_dir, port, "--simulate-gpus", "8xH100", "--stop-grace-s", "2")
    try:
        with api(second, token) as client:
            assert job(client, gated)["state"] == "RUNNING"
            checkpoint.joinpath("go").touch()
            finals = {
                j: wait_for(lambda j=j: _ended(client, j), what=f"{j} to end")
                for j in (gated, quick, big)
            }
            nodes = client.get("/v1/nodes").json()["items"]
    finally:
        second.stop()

    assert (finals[gated]["state"], finals[gated]["exit_code"]) == ("FAILED", 5)
    assert finals[gated]["reason"] == "EXIT_NONZERO"
    assert finals[quick]["state"] == finals[big]["state"] == "SUCCEEDED"
    for job_id in (gated, quick, big):
        runs = (data_dir / "jobs" / job_id / "checkpoint" / "runs").read_text()
        assert runs.count("run") == 1, f"{job_id} ran {runs.count('run')} times"
    assert all(d["allocation"] is None for n in nodes for d in n["devices"]), "leaked allocation"


def test_kill9_during_metering_charges_every_second_exactly_once(data_dir: Path) -> None:
    port = free_port()
    first = start_server(data_dir, port, "--simulate-gpus", "8xH100")
    token = first.token
    try:
        with api(first, token) as admin:
            for path, body in [
                ("/v1/prices", {"model": "H100", "gpu_hour": "3600", "cpu_core_hour": "0",
                                "memory_gib_hour": "0"}),
                ("/v1/tenants", {"name": "acme"}),
                ("/v1/admin/topups", {"tenant": "acme", "amount": "50", "ref": "r1"}),
            ]:
                assert admin.post(path, json=body).status_code == 201
            admin.put("/v1/admin/config/billing.admission_runway_seconds",
                      json={"value": "10"}).raise_for_status()
            user = admin.post("/v1/users", json={"name": "acme-u", "tenant": "acme"}).json()
        with api(first, user["token"]) as client:
            job_id = client.post("/v1/jobs", json={
                "command": ["sleep", "3"], "gpus": 1, "gpu_type": "H100", "cpus": 0.2,
            }).json()["id"]
            wait_for(lambda: job(client, job_id)["state"] == "RUNNING", what="running")
            time.sleep(1.5)  # let metering charge a little before the crash
        first.kill9()
    except BaseException:
        first.stop()
        raise
    time.sleep(6)  # the job ends while no control plane exists
    second = start_server(data_dir, port, "--simulate-gpus", "8xH100")
    try:
        with api(second, user["token"]) as client:
            final = wait_for(lambda: _ended(client, job_id), what="job to end")
            ran = int((datetime.fromisoformat(final["ended_at"])
                       - datetime.fromisoformat(final["started_at"])).total_seconds())
            # The meter closes on the pass after the job ends; then it must match exactly.
            wait_for(lambda: [u["seconds"] for u in client.get("/v1/usage").json()] == [ran],
                     timeout_s=30, what=f"{ran} charged seconds")
            balance = client.get("/v1/wallet").json()["balance"]
        with api(second, token) as admin:
            report = admin.get("/v1/admin/ledger/verify").json()
    finally:
        second.stop()

    assert final["state"] == "SUCCEEDED"
    assert balance == f"{50 - ran}.00"
    # It ran about 3 s; the ~6 s the control plane was down after it ended are not charged.
    assert ran <= 5
    assert report["ok"], report["violations"]
