"""Persistent volumes on the real local engine (real processes and files) and a real database
(SQLite and PostgreSQL): data outlives jobs, grow but never shrink, the quota, delete only when
detached, FULL when measured above the size, billing per GiB-second, tenancy."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpucloud.controllers.volume_usage import VolumeUsageController
from gpucloud.core.errors import EngineError
from gpucloud.engines import mount_ns, volume_loop
from gpucloud.engines.storage_dirs import storage_root, volume_dir
from gpucloud.store.db import Database
from gpucloud.store.models import Event, Job, MeteredLease
from tests.billing_api import bearer, priced_api, run_for, tenant, wallet
from tests.harness import Harness, local_engine_harness
from tests.servers import kill_job_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    kill_job_processes(path)
    for _ in range(50):  # image volumes: free their loop devices once the killed jobs are gone
        try:
            volume_loop.unmount_all(path / "storage")
            break
        except EngineError:
            time.sleep(0.1)


@pytest.fixture
def h(db: Database, data_dir: Path) -> Harness:
    return local_engine_harness(db, data_dir, "2xH100", stop_grace_s=1)


@pytest.fixture
def api(h: Harness) -> TestClient:
    client = priced_api(h)
    # Storage at 25,920.00 per GiB-month: 0.01 per GiB-second, whole minor units to count.
    client.post("/v1/prices", headers=bearer(h.admin_token),
                json={"storage_gib_month": "25920.00"}).raise_for_status()
    return client


def until(h: Harness, probe: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        h.settle(1)
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def job_state(api: TestClient, token: str, job_id: str) -> str:
    state: str = api.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()["state"]
    return state


def run_job(h: Harness, api: TestClient, token: str, script: str, **extra: Any) -> str:
    """Submit ``script``, wait for it to end; returns its output."""
    made = api.post("/v1/jobs", headers=bearer(token),
                    json={"command": ["/bin/sh", "-c", script], "cpus": 0.5, "memory": "256M",
                          **extra})
    assert made.status_code == 201, made.text
    job_id = made.json()["id"]
    until(h, lambda: job_state(api, token, job_id) in ("SUCCEEDED", "FAILED"), f"{job_id} ends")
    logs = api.get(f"/v1/jobs/{job_id}/logs", headers=bearer(token)).text
    assert job_state(api, token, job_id) == "SUCCEEDED", logs
    return logs


def create(api: TestClient, token: str, name: str, size: str) -> dict[str, Any]:
    made = api.post("/v1/volumes", headers=bearer(token), json={"name": name, "size": size})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def test_a_file_written_by_one_job_is_read_by_the_next(h: Harness, api: TestClient,
                                                       mount_point: str) -> None:
    token = tenant(api, h, "lab", "1000")
    volume = create(api, token, "my-data", "10G")
    assert volume["env"] == "GPUCLOUD_VOLUME_MY_DATA"
    link = mount_point.lstrip("/")  # the same path relative to the working directory
    run_job(h, api, token,
            'echo "from the first job" > "$GPUCLOUD_VOLUME_MY_DATA/note" && '
            f"echo 'by the link' > {link}/other", volumes=[f"my-data:{mount_point}"])
    second = run_job(h, api, token, f'cat "$GPUCLOUD_VOLUME_MY_DATA/note" {link}/other',
                     volumes=[f"my-data:{mount_point}:ro"])
    assert "from the first job" in second and "by the link" in second
    # The real directory, under the data dir, outlives both jobs.
    path = volume_dir(storage_root(h.ctx.engine), volume["id"])
    assert (path / "note").read_text() == "from the first job\n"


@pytest.fixture
def mount_point() -> Iterator[str]:
    """A host path no one else uses: the job's namespace creates its (empty) mount point."""
    path = Path("/mnt") / f"gpucloud-test-{secrets.token_hex(4)}"
    yield str(path / "data")
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(not mount_ns.available(),
                    reason="no private mount namespace here (needs root and util-linux unshare)")
def test_the_volume_is_really_mounted_at_its_path_and_ro_is_enforced(
        h: Harness, api: TestClient, mount_point: str) -> None:
    token = tenant(api, h, "lab", "1000")
    volume = create(api, token, "my-data", "10G")
    path = volume_dir(storage_root(h.ctx.engine), volume["id"])
    logs = run_job(h, api, token,
                   f"echo written > {mount_point}/f && grep -c ' {mount_point} ' "
                   "/proc/self/mountinfo", volumes=[f"my-data:{mount_point}"])
    assert logs.split()[-1] == "1", logs  # a mount point in the job's namespace
    assert (path / "f").read_text() == "written\n"  # the volume itself, on the host
    assert not (Path(mount_point) / "f").exists()  # the host's path is an empty directory
    assert mount_point not in Path("/proc/self/mountinfo").read_text()  # nor its mount
    # Read-only at the mount, by its real path (the variable) and through the working-dir link.
    targets = f'{mount_point}/g "$GPUCLOUD_VOLUME_MY_DATA/g" {mount_point.lstrip("/")}/g'
    logs = run_job(h, api, token,
                   f"cat {mount_point}/f; for t in {targets}; do "
                   "echo x > $t && echo WROTE $t; done; true",
                   volumes=[f"my-data:{mount_point}:ro"])
    assert "written" in logs and "WROTE" not in logs, logs
    assert logs.count("Read-only file system") == 3, logs
    assert {p.name for p in path.iterdir()} - {"lost+found"} == {"f"}  # ext4 has lost+found


@pytest.mark.skipif(not volume_loop.loop_supported(),
                    reason="image volumes need root and the ext4/loop tools")
def test_an_image_volume_is_its_size_grows_and_survives_a_restart(
        h: Harness, api: TestClient, mount_point: str) -> None:
    token = tenant(api, h, "lab", "1000")
    volume = create(api, token, "hard", "1G")
    root = storage_root(h.ctx.engine)
    path, image = volume_dir(root, volume["id"]), volume_loop.image_path(root, volume["id"])
    # fallocate takes the space without writing it (fast); then a real write runs out.
    fill = ('fallocate -l 900M "$GPUCLOUD_VOLUME_HARD/a" && '
            'if head -c 100M /dev/zero > "$GPUCLOUD_VOLUME_HARD/b"; then echo WROTE; fi; true')
    logs = run_job(h, api, token, fill, volumes=[f"hard:{mount_point}"])
    assert "No space left on device" in logs and "WROTE" not in logs, logs
    assert os.path.ismount(path) and image.stat().st_blocks * 512 < 100 * 2**20  # sparse
    api.post("/v1/volumes/hard/grow", headers=bearer(token),
             json={"size": "2G"}).raise_for_status()
    h.settle(1)  # the usage controller applies the grow (offline here: no CAP_SYS_RESOURCE)
    assert os.statvfs(path).f_blocks * os.statvfs(path).f_frsize > 1.8 * 2**30
    logs = run_job(h, api, token, 'head -c 100M /dev/zero > "$GPUCLOUD_VOLUME_HARD/b" && '
                   "echo WROTE", volumes=[f"hard:{mount_point}"])
    assert "WROTE" in logs, logs
    # What a reboot does; the restarted control plane mounts it again, data intact.
    subprocess.run(["umount", str(path)], check=True)
    assert not (path / "a").exists()
    h.restart().settle(1)
    assert os.path.ismount(path)
    assert {p.name: p.stat().st_size for p in path.iterdir() if p.is_file()} == {
        "a": 900 * 2**20, "b": 100 * 2**20}
    assert api.delete("/v1/volumes/hard", headers=bearer(token)).status_code == 200
    until(h, lambda: not path.exists(), "the volume is unmounted and removed")
    assert not image.exists() and str(image) not in subprocess.run(
        ["losetup", "-a"], capture_output=True, text=True, check=True).stdout


def test_grow_works_shrink_is_refused_and_the_quota_holds(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "lab", "1000")
    create(api, token, "big", "10G")
    grown = api.post("/v1/volumes/big/grow", headers=bearer(token), json={"size": "20G"})
    assert grown.status_code == 200, grown.text
    assert grown.json()["size_gib"] == 20
    shrink = api.post("/v1/volumes/big/grow", headers=bearer(token), json={"size": "5G"})
    assert shrink.status_code == 422
    assert "cannot shrink" in shrink.json()["detail"]
    assert api.get("/v1/volumes/big", headers=bearer(token)).json()["size_gib"] == 20
    api.put("/v1/admin/config/storage.volume_quota_gib", json={"value": "25"},
            headers=bearer(h.admin_token)).raise_for_status()
    over = api.post("/v1/volumes", headers=bearer(token), json={"name": "more", "size": "6G"})
    assert over.status_code == 422 and "quota of 25 GiB" in over.json()["detail"]
    over_grow = api.post("/v1/volumes/big/grow", headers=bearer(token), json={"size": "26G"})
    assert over_grow.status_code == 422
    assert create(api, token, "fits", "5G")["size_gib"] == 5
    taken = api.post("/v1/volumes", headers=bearer(token), json={"name": "big", "size": "1G"})
    assert taken.status_code == 409


def test_storage_is_billed_per_gib_second_from_create_through_grow_to_delete(
        h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "lab", "100")
    volume = create(api, token, "billed", "2G")  # 0.02 a second
    assert volume["price_per_hour_minor"] == 7200  # 72.00 an hour
    run_for(h, 10)
    api.post("/v1/volumes/billed/grow", headers=bearer(token),
             json={"size": "3G"}).raise_for_status()  # 0.03 a second from now
    run_for(h, 10)
    deleted = api.delete("/v1/volumes/billed", headers=bearer(token))
    assert deleted.status_code == 200 and deleted.json()["state"] == "DELETED"
    run_for(h, 10)  # nothing more once deleted
    assert wallet(api, token)["balance"] == f"{100 - 10 * 0.02 - 10 * 0.03:.2f}"
    with h.ctx.db.read() as session:
        leases = list(session.scalars(select(MeteredLease).where(
            MeteredLease.ref_id == volume["id"]).order_by(MeteredLease.started_at)))
    assert [(lease.quantity, lease.ended_at is not None, lease.settled) for lease in leases] == [
        (2, True, True), (3, True, True)]
    rows = api.get("/v1/usage", headers=bearer(token)).json()
    assert sorted((r["kind"], r["quantity"], r["seconds"], r["cost"]) for r in rows
                  if r["ref_id"] == volume["id"]) == [("storage", 2, 10, "0.20"),
                                                      ("storage", 3, 10, "0.30")]


def test_delete_while_attached_is_refused_and_names_the_job(h: Harness, api: TestClient,
                                                            mount_point: str) -> None:
    token = tenant(api, h, "lab", "1000")
    volume = create(api, token, "held", "1G")
    made = api.post("/v1/jobs", headers=bearer(token),
                    json={"command": ["sleep", "60"], "cpus": 0.5, "memory": "256M",
                          "volumes": [f"held:{mount_point}"]})
    job_id = made.json()["id"]
    until(h, lambda: job_state(api, token, job_id) == "RUNNING", "the job runs")
    refused = api.delete("/v1/volumes/held", headers=bearer(token))
    assert refused.status_code == 409
    assert job_id in refused.json()["detail"]
    shown = api.get("/v1/volumes/held", headers=bearer(token)).json()
    assert shown["state"] == "AVAILABLE" and any(job_id in a for a in shown["attached_to"])
    api.post(f"/v1/jobs/{job_id}/cancel", headers=bearer(token)).raise_for_status()
    until(h, lambda: job_state(api, token, job_id) == "CANCELLED", "the job ends")
    assert api.delete("/v1/volumes/held", headers=bearer(token)).status_code == 200
    path = volume_dir(storage_root(h.ctx.engine), volume["id"])
    until(h, lambda: not path.exists(), "the directory is removed")
    # The name is free again; the old volume is still listed with --deleted.
    assert create(api, token, "held", "1G")["id"] != volume["id"]
    listed = api.get("/v1/volumes?deleted=true", headers=bearer(token)).json()["items"]
    assert {v["state"] for v in listed} == {"AVAILABLE", "DELETED"}


def test_unknown_and_full_volumes_are_refused_at_submission(h: Harness, api: TestClient,
                                                            mount_point: str) -> None:
    token = tenant(api, h, "lab", "1000")
    job = {"command": ["true"], "cpus": 0.5, "memory": "256M"}
    missing = api.post("/v1/jobs", headers=bearer(token), json={**job, "volumes": ["nope:/x"]})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    volume = create(api, token, "small", "1G")
    path = volume_dir(storage_root(h.ctx.engine), volume["id"])
    path.mkdir(parents=True)
    with (path / "huge.bin").open("wb") as handle:  # 2 GiB apparent, sparse on disk
        handle.truncate(2 * 1024**3)
    VolumeUsageController(h.ctx).reconcile_once()
    shown = api.get("/v1/volumes/small", headers=bearer(token)).json()
    assert shown["state"] == "FULL" and shown["used_bytes"] == 2 * 1024**3
    assert any(e["after"] == "FULL" and "no new attachments" in e["message"]
               for e in shown["events"])
    attach = {**job, "volumes": [f"small:{mount_point}"]}
    full = api.post("/v1/jobs", headers=bearer(token), json=attach)
    assert full.status_code == 409 and "full" in full.json()["detail"]
    api.post("/v1/volumes/small/grow", headers=bearer(token),
             json={"size": "3G"}).raise_for_status()
    assert api.get("/v1/volumes/small", headers=bearer(token)).json()["state"] == "AVAILABLE"
    ok = api.post("/v1/jobs", headers=bearer(token), json=attach)
    assert ok.status_code == 201, ok.text
    (path / "huge.bin").unlink()


def test_another_tenant_gets_404_and_cannot_attach(h: Harness, api: TestClient) -> None:
    a = tenant(api, h, "tenant-a", "1000")
    b = tenant(api, h, "tenant-b", "1000")
    volume = create(api, a, "secret", "1G")
    for method, path, body in [("GET", f"/v1/volumes/{volume['id']}", None),
                               ("GET", "/v1/volumes/secret", None),
                               ("POST", f"/v1/volumes/{volume['id']}/grow", {"size": "2G"}),
                               ("DELETE", f"/v1/volumes/{volume['id']}", None)]:
        answer = api.request(method, path, headers=bearer(b), json=body)
        assert answer.status_code == 404, (method, path, answer.text)
    assert api.get("/v1/volumes", headers=bearer(b)).json()["items"] == []
    stolen = api.post("/v1/jobs", headers=bearer(b), json={
        "command": ["true"], "cpus": 0.5, "memory": "256M", "volumes": ["secret:/x"]})
    assert stolen.status_code == 404
    assert api.get(f"/v1/volumes/{volume['id']}", headers=bearer(a)).json()["size_gib"] == 1
    with h.ctx.db.read() as session:
        assert session.scalars(select(Event).where(Event.object_id == volume["id"])).first()


def test_an_instance_mounts_its_volumes_and_holds_them_until_deleted(
        h: Harness, api: TestClient, mount_point: str) -> None:
    token = tenant(api, h, "lab", "1000")
    body = {"gpus": 0, "cpus": 0.5, "memory": "256M", "name": "dev"}
    missing = api.post("/v1/instances", headers=bearer(token),
                       json={**body, "volumes": [f"work:{mount_point}"]})
    assert missing.status_code == 404 and "work" in missing.json()["detail"]
    volume = create(api, token, "work", "1G")
    made = api.post("/v1/instances", headers=bearer(token),
                    json={**body, "volumes": [f"work:{mount_point}"]})
    assert made.status_code == 201, made.text

    def running_job() -> str | None:
        shown = api.get("/v1/instances/dev", headers=bearer(token)).json()
        return shown["job_id"] if shown["state"] == "RUNNING" else None

    job_id = until(h, running_job, "the instance runs")
    with h.ctx.db.read() as session:
        assert session.get_one(Job, job_id).spec["volumes"] == [f"work:{mount_point}"]
    engine_dir = h.ctx.engine.data_dir  # type: ignore[attr-defined]
    link = engine_dir / "jobs" / job_id / "work" / mount_point.lstrip("/")
    assert link.resolve() == volume_dir(storage_root(h.ctx.engine), volume["id"]).resolve()
    env = [json.loads(p.read_text())["env"] for p in engine_dir.glob("runs/*/spec.json")]
    assert [e["GPUCLOUD_VOLUME_WORK"] for e in env] == [str(link.resolve())]
    refused = api.delete("/v1/volumes/work", headers=bearer(token))
    assert refused.status_code == 409 and "instance dev" in refused.json()["detail"]
    api.post("/v1/instances/dev/stop", headers=bearer(token)).raise_for_status()
    until(h, lambda: api.get("/v1/instances/dev", headers=bearer(token)).json()["state"]
          == "STOPPED", "the instance stops")
    assert api.delete("/v1/volumes/work", headers=bearer(token)).status_code == 409  # kept
    api.delete("/v1/instances/dev", headers=bearer(token)).raise_for_status()
    assert api.delete("/v1/volumes/work", headers=bearer(token)).status_code == 200


def test_an_operator_sets_one_tenants_quota(h: Harness, api: TestClient) -> None:
    a = tenant(api, h, "tenant-a", "1000")
    b = tenant(api, h, "tenant-b", "1000")
    admin = bearer(h.admin_token)
    assert api.get("/v1/volume-quota", headers=bearer(a)).json() == {
        "tenant_id": api.get("/v1/whoami", headers=bearer(a)).json()["tenant_id"],
        "quota_gib": 1024, "used_gib": 0, "own": False}
    # Only the operator sets it; another tenant's is a 404 to a tenant.
    assert api.put("/v1/volume-quota", headers=bearer(a), json={"gib": 5000}).status_code == 403
    assert api.get("/v1/volume-quota?tenant=tenant-a", headers=bearer(b)).status_code == 404
    set_to = api.put("/v1/volume-quota?tenant=tenant-a", headers=admin, json={"gib": 5})
    assert set_to.status_code == 200 and set_to.json()["own"] is True
    create(api, a, "four", "4G")
    over = api.post("/v1/volumes", headers=bearer(a), json={"name": "two", "size": "2G"})
    assert over.status_code == 422 and "quota of 5 GiB (4 GiB held)" in over.json()["detail"]
    assert create(api, b, "two", "2G")["size_gib"] == 2  # B keeps the default
    api.put("/v1/volume-quota?tenant=tenant-a", headers=admin,
            json={"gib": None}).raise_for_status()
    assert create(api, a, "two", "2G")["size_gib"] == 2
