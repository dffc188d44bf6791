"""Versioned datasets on the real local engine and a real database (SQLite and PostgreSQL):
pushed through the SDK as a tar stream, identified by their content hash, immutable, read by
real jobs from each node's cache, LRU eviction and hit rate, removal refused while mounted,
tenancy."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpucloud.client.client import Client
from gpucloud.client.storage import write_tar
from gpucloud.controllers.volume_usage import VolumeUsageController
from gpucloud.core.errors import InvalidRequest
from gpucloud.engines import mount_ns
from gpucloud.engines.storage_dirs import node_cache_dir, storage_root, version_dir
from gpucloud.store import node_cache
from gpucloud.store.db import Database
from gpucloud.store.models import Allocation, Job
from tests.billing_api import bearer, tenant
from tests.fakes import FakeEngine, gpu_node
from tests.harness import Harness, local_engine_harness, make_harness
from tests.servers import kill_job_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    kill_job_processes(path)


@pytest.fixture
def h(db: Database, data_dir: Path) -> Harness:
    return local_engine_harness(db, data_dir, "2xH100", stop_grace_s=1)


@pytest.fixture
def api(h: Harness) -> TestClient:
    return h.api()


def sdk(api: TestClient, token: str) -> Client:
    """The real SDK over the in-process app (the TestClient's transport)."""
    return Client("http://testserver", token, transport=api._transport)


def until(h: Harness, probe: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        h.settle(1)
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def make_dir(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def submit(api: TestClient, token: str, script: str, **extra: Any) -> str:
    made = api.post("/v1/jobs", headers=bearer(token),
                    json={"command": ["/bin/sh", "-c", script], "cpus": 0.5, "memory": "256M",
                          **extra})
    assert made.status_code == 201, made.text
    job_id: str = made.json()["id"]
    return job_id


def finished(h: Harness, api: TestClient, token: str, job_id: str) -> tuple[str, str]:
    def state() -> str:
        value: str = api.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()["state"]
        return value

    until(h, lambda: state() in ("SUCCEEDED", "FAILED", "CANCELLED"), f"{job_id} ends")
    return state(), api.get(f"/v1/jobs/{job_id}/logs", headers=bearer(token)).text


def test_versions_are_content_hashes_immutable_and_new_only_for_new_content(
        h: Harness, api: TestClient, tmp_path: Path) -> None:
    token = tenant(api, h, "lab", "1000")
    client = sdk(api, token)
    src = make_dir(tmp_path / "src", {"b.txt": b"bee\n", "a/one.bin": b"\x00\x01" * 1000})
    seen: list[tuple[int, int]] = []
    first = client.push_dataset("corpus", src, progress=lambda sent, total: seen.append(
        (sent, total)))
    assert first.created and first.number == 1 and first.files == 2
    assert seen and seen[-1][0] == seen[-1][1]  # the progress reached the whole upload
    # The hash is the documented one: sorted relative paths, each "path NUL size NUL data".
    expected = hashlib.sha256()
    for path, data in sorted({"a/one.bin": b"\x00\x01" * 1000, "b.txt": b"bee\n"}.items()):
        expected.update(path.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    assert first.content_hash == expected.hexdigest()
    assert first.version == first.content_hash[:12]
    again = client.push_dataset("corpus", src)  # the SDK asks by hash: nothing uploaded
    assert not again.created and again.id == first.id
    with (tmp_path / "upload.tar").open("wb") as tar:  # uploaded anyway: the server dedupes
        size = write_tar(src, tar)
    raw = api.post("/v1/datasets/corpus/versions", headers={
        **bearer(token), "Content-Type": "application/x-tar"},
        content=(tmp_path / "upload.tar").read_bytes())
    assert size > 0 and raw.status_code == 200, raw.text
    assert raw.json()["id"] == first.id and raw.json()["created"] is False
    (src / "b.txt").write_bytes(b"bee, changed\n")
    second = client.push_dataset("corpus", src)
    assert second.created and second.number == 2 and second.content_hash != first.content_hash
    assert [v.number for v in client.dataset_versions("corpus")] == [1, 2]
    # Stored read-only, and the API has no way to change a version.
    stored = version_dir(storage_root(h.ctx.engine), first.id)
    assert (stored / "b.txt").read_bytes() == b"bee\n"
    assert all(p.stat().st_mode & 0o222 == 0 for p in [stored, *stored.rglob("*")])
    paths = api.get("/openapi.json").json()["paths"]
    for path, ops in paths.items():
        if path.startswith("/v1/datasets/{ref}/versions/"):
            assert set(ops) <= {"get", "delete"}, (path, set(ops))
    # A link in the pushed tree is refused, and nothing changed.
    (src / "link").symlink_to(src / "b.txt")
    with pytest.raises(InvalidRequest, match="links"):
        client.push_dataset("corpus", src)
    assert len(client.dataset_versions("corpus")) == 2


def test_a_job_reads_a_dataset_read_only_from_its_nodes_cache(
        h: Harness, api: TestClient, tmp_path: Path) -> None:
    token = tenant(api, h, "lab", "1000")
    client = sdk(api, token)
    version = client.push_dataset("words", make_dir(tmp_path / "w", {"hello.txt": b"hi there\n"}))
    script = ('cat "$GPUCLOUD_DATASET_WORDS/hello.txt"; '
              'if echo x > "$GPUCLOUD_DATASET_WORDS/new"; then echo WROTE; else echo REFUSED; fi')
    job_id = submit(api, token, script, datasets=["words"])
    with h.ctx.db.read() as session:  # pinned at submission: a later push changes nothing
        assert session.get_one(Job, job_id).spec["datasets"] == [f"words:{version.version}"]
    state, logs = finished(h, api, token, job_id)
    assert state == "SUCCEEDED", logs
    assert "hi there" in logs
    copy = node_cache_dir(storage_root(h.ctx.engine), "local-0", version.id)
    assert all(p.stat().st_mode & 0o222 == 0 for p in [copy, copy / "hello.txt"])
    if mount_ns.available():  # root here: a read-only bind mount in the job's namespace
        assert "REFUSED" in logs and "WROTE" not in logs
        assert "Read-only file system" in logs, logs
        assert not (copy / "new").exists()
    elif os.geteuid() != 0:  # no namespace: mode bits only, which root ignores
        assert "REFUSED" in logs and "WROTE" not in logs
    cache = {n.node_id: n for n in client.dataset_cache()}
    (node_id, node), = cache.items()
    assert (node.hits, node.misses, node.hit_rate) == (0, 1, 0.0)
    assert [(e.dataset, e.version) for e in node.entries] == [("words", version.version)]
    copy = node_cache_dir(storage_root(h.ctx.engine), node_id, version.id)
    assert (copy / "hello.txt").read_bytes() == b"hi there\n"  # a real copy, read-only
    assert not (copy / "hello.txt").samefile(
        version_dir(storage_root(h.ctx.engine), version.id) / "hello.txt")
    state, logs = finished(h, api, token, submit(api, token, script,
                                                 datasets=[f"words:{version.version}"]))
    assert state == "SUCCEEDED" and "hi there" in logs
    node = {n.node_id: n for n in client.dataset_cache()}[node_id]
    assert (node.hits, node.misses, node.hit_rate) == (1, 1, 0.5)


@pytest.mark.skipif(not mount_ns.available(),
                    reason="no private mount namespace here (needs root and util-linux unshare)")
def test_even_root_cannot_write_a_dataset_by_its_real_path(
        h: Harness, api: TestClient, tmp_path: Path) -> None:
    """Root ignores mode bits; the job's namespace mounts the whole dataset store and the node
    caches read-only, so neither the job's copy nor the store itself can be changed."""
    assert os.geteuid() == 0
    token = tenant(api, h, "lab", "1000")
    version = sdk(api, token).push_dataset("words", make_dir(tmp_path / "w", {"a.txt": b"a\n"}))
    store = version_dir(storage_root(h.ctx.engine), version.id)
    script = (f'chmod u+w "$GPUCLOUD_DATASET_WORDS" {store} || echo CHMOD-REFUSED; '
              f'echo changed > {store}/a.txt || echo STORE-REFUSED; '
              'mkdir "$GPUCLOUD_DATASET_WORDS/d" || echo CACHE-REFUSED')
    state, logs = finished(h, api, token, submit(api, token, script, datasets=["words"]))
    assert state == "SUCCEEDED", logs
    assert {"CHMOD-REFUSED", "STORE-REFUSED", "CACHE-REFUSED"} <= set(logs.split()), logs
    assert (store / "a.txt").read_bytes() == b"a\n"
    assert store.stat().st_mode & 0o222 == 0


def test_the_cache_evicts_the_least_recently_used_version(
        h: Harness, api: TestClient, tmp_path: Path) -> None:
    token = tenant(api, h, "lab", "1000")
    client = sdk(api, token)
    api.put("/v1/admin/config/storage.node_cache_mib", json={"value": "1"},
            headers=bearer(h.admin_token)).raise_for_status()
    kib = 1024
    versions = [client.push_dataset(f"d{i}", make_dir(tmp_path / f"d{i}", {
        "data.bin": bytes([i]) * (400 * kib)})) for i in range(3)]
    clock = h.clock
    with h.ctx.db.write() as session:  # d0 then d1 fill 800 KiB of the 1 MiB cache
        node_cache.use(session, "n0", [(versions[0].id, versions[0].size_bytes)], set(),
                       clock.now())
        clock.advance(1)
        node_cache.use(session, "n0", [(versions[1].id, versions[1].size_bytes)], set(),
                       clock.now())
        clock.advance(1)
        hit = node_cache.use(session, "n0", [(versions[0].id, versions[0].size_bytes)], set(),
                             clock.now())  # d0 is now the most recently used
        clock.advance(1)
        third = node_cache.use(session, "n0", [(versions[2].id, versions[2].size_bytes)], set(),
                               clock.now())
    assert hit[0].hit and third[0].cached and third[0].evicted == (versions[1].id,)
    with h.ctx.db.read() as session:
        held = {e.version_id for e in node_cache.entries_of(session, "n0")}
    assert held == {versions[0].id, versions[2].id}
    # A pinned version (mounted by a running job) is never evicted: nothing fits, so the job
    # reads the dataset store directly.
    with h.ctx.db.write() as session:
        bypass = node_cache.use(session, "n0", [(versions[1].id, versions[1].size_bytes)],
                                {versions[0].id, versions[2].id}, clock.now())
    assert not bypass[0].cached
    stats = {n.node_id: n for n in client.dataset_cache()}["n0"]
    assert (stats.hits, stats.misses, stats.evictions) == (1, 4, 1)
    # The evicted copy's directory is removed by the storage controller.
    root = storage_root(h.ctx.engine)
    stale = node_cache_dir(root, "n0", versions[1].id)
    stale.mkdir(parents=True)
    (stale / "data.bin").write_bytes(b"old")
    kept = node_cache_dir(root, "n0", versions[0].id)
    kept.mkdir(parents=True)
    VolumeUsageController(h.ctx).reconcile_once()
    assert not stale.exists() and kept.exists()


def test_rm_is_refused_while_a_running_job_mounts_the_dataset(
        h: Harness, api: TestClient, tmp_path: Path) -> None:
    token = tenant(api, h, "lab", "1000")
    client = sdk(api, token)
    one = client.push_dataset("ds", make_dir(tmp_path / "one", {"f": b"1"}))
    two = client.push_dataset("ds", make_dir(tmp_path / "two", {"f": b"2"}))
    job_id = submit(api, token, "sleep 60", datasets=[f"ds:{one.version}"])
    until(h, lambda: api.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()["state"]
          == "RUNNING", "the job runs")
    refused = api.delete(f"/v1/datasets/ds/versions/{one.version}", headers=bearer(token))
    assert refused.status_code == 409 and job_id in refused.json()["detail"]
    assert api.delete("/v1/datasets/ds", headers=bearer(token)).status_code == 409
    # The version it does not mount can go.
    removed = api.delete(f"/v1/datasets/ds/versions/{two.version}", headers=bearer(token))
    assert removed.status_code == 200, removed.text
    assert not version_dir(storage_root(h.ctx.engine), two.id).exists()
    api.post(f"/v1/jobs/{job_id}/cancel", headers=bearer(token)).raise_for_status()
    until(h, lambda: api.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()["state"]
          == "CANCELLED", "the job ends")
    assert api.delete("/v1/datasets/ds", headers=bearer(token)).status_code == 200
    assert not version_dir(storage_root(h.ctx.engine), one.id).exists()
    assert api.get("/v1/datasets/ds", headers=bearer(token)).status_code == 404


def test_another_tenant_gets_404_and_cannot_mount(
        h: Harness, api: TestClient, tmp_path: Path) -> None:
    a = tenant(api, h, "tenant-a", "1000")
    b = tenant(api, h, "tenant-b", "1000")
    version = sdk(api, a).push_dataset("private", make_dir(tmp_path / "p", {"f": b"secret"}))
    dataset_id = api.get("/v1/datasets/private", headers=bearer(a)).json()["id"]
    for method, path in [("GET", f"/v1/datasets/{dataset_id}"), ("GET", "/v1/datasets/private"),
                         ("GET", f"/v1/datasets/{dataset_id}/versions"),
                         ("POST", f"/v1/datasets/{dataset_id}/versions"),
                         ("DELETE", f"/v1/datasets/{dataset_id}/versions/{version.version}"),
                         ("DELETE", f"/v1/datasets/{dataset_id}")]:
        answer = api.request(method, path, headers=bearer(b), content=b"")
        assert answer.status_code == 404, (method, path, answer.text)
    assert api.get("/v1/datasets", headers=bearer(b)).json()["items"] == []
    stolen = api.post("/v1/jobs", headers=bearer(b), json={
        "command": ["true"], "cpus": 0.5, "memory": "256M", "datasets": ["private"]})
    assert stolen.status_code == 404
    # B's own dataset of the same name is another dataset.
    mine = sdk(api, b).push_dataset("private", make_dir(tmp_path / "q", {"f": b"secret"}))
    assert mine.id != version.id and mine.content_hash == version.content_hash
    assert len(sdk(api, a).dataset_versions("private")) == 1


def test_the_scheduler_places_a_job_on_the_node_that_caches_its_dataset(
        db: Database, tmp_path: Path) -> None:
    engine = FakeEngine([gpu_node("n0"), gpu_node("n1")], checkpoint_root=tmp_path / "ckpt")
    h = make_harness(db, engine)
    api = h.api()
    token = tenant(api, h, "lab", "1000")
    version = sdk(api, token).push_dataset("ds", make_dir(tmp_path / "ds", {"f": b"data"}))
    with h.ctx.db.write() as session:  # n1's cache already holds it
        node_cache.use(session, "n1", [(version.id, version.size_bytes)], set(), h.clock.now())

    def node_of(job_id: str) -> str:
        h.settle()
        with h.ctx.db.read() as session:
            return session.scalars(select(Allocation.node_id).where(
                Allocation.job_id == job_id)).one()

    plain = {"command": ["train"], "gpus": 1, "gpu_type": "H100"}
    first = api.post("/v1/jobs", headers=bearer(token), json=plain).json()["id"]
    assert node_of(first) == "n0"  # without data to follow: the first node in order
    reads = api.post("/v1/jobs", headers=bearer(token), json={**plain, "datasets": ["ds"]})
    assert node_of(reads.json()["id"]) == "n1"
