"""/v1/datasets: named datasets of immutable versions, pushed as a tar stream; and
/v1/dataset-cache: each node's cache of versions, its hits, misses and hit rate."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

from fastapi import Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gpucloud.api import idempotent
from gpucloud.api.deps import Platform, PlatformDep, PrincipalDep
from gpucloud.api.routing import api_router
from gpucloud.core.datasets import (
    check_dataset_name,
    dataset_env_name,
    hit_rate,
    parse_dataset_ref,
    short_version,
)
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.tenancy import Principal, Role
from gpucloud.engines.storage_dirs import (
    extract_tar,
    hash_tree,
    install_version,
    new_upload_dir,
    node_cache_dir,
    remove_tree,
    storage_root,
    version_dir,
)
from gpucloud.schemas import Page
from gpucloud.schemas.workspaces import (
    CacheEntryOut,
    DatasetCreate,
    DatasetOut,
    DatasetVersionOut,
    NodeCacheOut,
)
from gpucloud.store import datasets as store
from gpucloud.store import node_cache
from gpucloud.store.models_workspaces import Dataset, DatasetVersion, NodeCacheEntry

router = api_router(tags=["datasets"])
TAR_BODY = {"requestBody": {"required": True, "content": {
    "application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("/v1/datasets", status_code=201, response_model=DatasetOut,
             responses={409: {"description": "the name is taken"}})
def create_dataset(body: DatasetCreate, platform: PlatformDep, who: PrincipalDep,
                   idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
    """An empty dataset; push versions to it (``gpucloud dataset push`` creates it)."""
    who.require(Role.MEMBER, "creating datasets")
    name = check_dataset_name(body.name)
    now = platform.ctx.clock.now()

    def action(session: Session) -> Any:
        dataset = store.create_dataset(session, platform.ctx.ids, who, name, now)
        return dataset_out(session, dataset).model_dump(mode="json")

    return idempotent.create(platform, who, idempotency_key, "/v1/datasets",
                             body.model_dump(mode="json"), action)


@router.get("/v1/datasets", response_model=Page[DatasetOut])
def list_datasets(platform: PlatformDep, who: PrincipalDep,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100,
                  cursor: str | None = None) -> Page[DatasetOut]:
    with platform.ctx.db.read() as session:
        page = store.list_datasets(session, who, limit, cursor)
        return Page[DatasetOut](items=[dataset_out(session, d) for d in page.items],
                                next_cursor=page.next_cursor)


@router.get("/v1/datasets/{ref}", response_model=DatasetOut)
def get_dataset(ref: str, platform: PlatformDep, who: PrincipalDep) -> DatasetOut:
    with platform.ctx.db.read() as session:
        return dataset_out(session, store.get_dataset(session, who, ref))


@router.get("/v1/datasets/{ref}/versions", response_model=Page[DatasetVersionOut])
def list_versions(ref: str, platform: PlatformDep, who: PrincipalDep,
                  content_hash: str | None = None) -> Page[DatasetVersionOut]:
    """Oldest first; with ``content_hash``, only the version of that content (a client that
    hashed its files asks before uploading them again)."""
    with platform.ctx.db.read() as session:
        dataset = store.get_dataset(session, who, ref)
        versions = store.versions_of(session, dataset.id)
        if content_hash is not None:
            versions = [v for v in versions if v.content_hash == content_hash.lower()]
        return Page[DatasetVersionOut](items=[version_out(dataset, v) for v in versions],
                                       next_cursor=None)


@router.post("/v1/datasets/{ref}/versions", status_code=201, response_model=DatasetVersionOut,
             openapi_extra=TAR_BODY,
             responses={200: {"description": "identical content: the existing version"}})
async def push_version(ref: str, request: Request, platform: PlatformDep,
                       who: PrincipalDep) -> JSONResponse:
    """The body is a tar stream of the version's files (regular files and directories). The
    server hashes the content: the same content is the same version (200), other content a
    new one (201). Versions are read-only and never change."""
    dataset_id = await run_in_threadpool(_dataset_for_push, platform, who, ref)
    root = storage_root(platform.ctx.engine)
    staged = await run_in_threadpool(new_upload_dir, root)
    try:
        with (staged / "upload.tar").open("wb") as handle:
            async for chunk in request.stream():
                await run_in_threadpool(handle.write, chunk)
        version, created = await run_in_threadpool(_ingest, platform, who, dataset_id, staged)
    finally:
        await run_in_threadpool(remove_tree, staged)
    return JSONResponse(version.model_copy(update={"created": created}).model_dump(mode="json"),
                        status_code=201 if created else 200)


def _dataset_for_push(platform: Platform, who: Principal, ref: str) -> str:
    with platform.ctx.db.read() as session:
        dataset_id = store.get_dataset(session, who, ref).id  # 404 before 403
    who.require(Role.MEMBER, "pushing dataset versions")
    return dataset_id


def _ingest(platform: Platform, who: Principal, dataset_id: str,
            staged: Path) -> tuple[DatasetVersionOut, bool]:
    files = staged / "files"
    files.mkdir()
    with (staged / "upload.tar").open("rb") as stream:
        extract_tar(stream, files)
    digest = hash_tree(files)
    if digest.files == 0:
        raise InvalidRequest("the pushed directory holds no files; a version needs at least one")
    content_hash = digest.hexdigest()
    root, now = storage_root(platform.ctx.engine), platform.ctx.clock.now()
    with platform.ctx.db.read() as session:
        dataset = session.get_one(Dataset, dataset_id)
        existing = session.scalar(select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.content_hash == content_hash))
        if existing is not None:
            return version_out(dataset, existing), False
    # Files first, then the row: a version row always has its files.
    version_id = platform.ctx.ids.new("dsv", now)
    install_version(files, version_dir(root, version_id))
    with platform.ctx.db.write() as session:
        dataset = session.get_one(Dataset, dataset_id)
        version, created = store.add_version(session, version_id, dataset, content_hash,
                                             digest.size, digest.files, who, now)
        shown = version_out(dataset, version)
    if not created:  # the same content was pushed concurrently and won
        remove_tree(version_dir(root, version_id))
    return shown, created


@router.delete("/v1/datasets/{ref}", response_model=DatasetOut)
def delete_dataset(ref: str, platform: PlatformDep, who: PrincipalDep) -> DatasetOut:
    """Every version; refused while an unfinished job mounts one."""
    with platform.ctx.db.read() as session:
        dataset_id = store.get_dataset(session, who, ref).id
    who.require(Role.MEMBER, "removing datasets")
    with platform.ctx.db.write() as session:
        dataset = store.get_dataset(session, who, dataset_id)
        shown = dataset_out(session, dataset)
        gone = store.remove_dataset(session, dataset)
    _remove_files(platform, gone)
    return shown


@router.delete("/v1/datasets/{ref}/versions/{version}", response_model=DatasetVersionOut)
def delete_version(ref: str, version: str, platform: PlatformDep,
                   who: PrincipalDep) -> DatasetVersionOut:
    """One version (by its hash prefix); refused while an unfinished job mounts it."""
    with platform.ctx.db.read() as session:
        dataset_id = store.get_dataset(session, who, ref).id
    who.require(Role.MEMBER, "removing dataset versions")
    with platform.ctx.db.write() as session:
        dataset = store.get_dataset(session, who, dataset_id)
        wanted = parse_dataset_ref(f"{dataset.name}:{version}").version
        if wanted is None:
            raise InvalidRequest("name the version to remove by its hash", "version")
        found = store.find_version(session, dataset, wanted)
        shown = version_out(dataset, found)
        gone = store.remove_versions(session, dataset, [found])
    _remove_files(platform, gone)
    return shown


def _remove_files(platform: Platform, version_ids: list[str]) -> None:
    """After the commit; ``controllers.volume_usage`` finishes what a crash here leaves."""
    root = storage_root(platform.ctx.engine)
    for version_id in version_ids:
        remove_tree(version_dir(root, version_id))
        with contextlib.suppress(FileNotFoundError):
            for node in (root / "node-cache").iterdir():
                remove_tree(node_cache_dir(root, node.name, version_id))


@router.get("/v1/dataset-cache", response_model=Page[NodeCacheOut])
def dataset_cache(platform: PlatformDep, who: PrincipalDep) -> Page[NodeCacheOut]:
    """Each node's cache: capacity, use, hits, misses, hit rate; the caller's own versions in
    it (an operator sees every tenant's)."""
    with platform.ctx.db.read() as session:
        capacity = node_cache.capacity_bytes(session)
        stats = {s.node_id: s for s in node_cache.all_stats(session)}
        entries = node_cache.entries_of(session)
        used: dict[str, int] = {}
        for entry in entries:
            used[entry.node_id] = used.get(entry.node_id, 0) + entry.size_bytes
        mine = _visible_entries(session, who)
        items = []
        for node_id in sorted(set(stats) | set(used)):
            row = stats.get(node_id)
            hits, misses = (row.hits, row.misses) if row else (0, 0)
            items.append(NodeCacheOut(
                node_id=node_id, capacity_bytes=capacity, used_bytes=used.get(node_id, 0),
                hits=hits, misses=misses, evictions=row.evictions if row else 0,
                hit_rate=hit_rate(hits, misses), entries=mine.get(node_id, [])))
        return Page[NodeCacheOut](items=items, next_cursor=None)


def _visible_entries(session: Session, who: Principal) -> dict[str, list[CacheEntryOut]]:
    query = (select(NodeCacheEntry, DatasetVersion, Dataset)
             .join(DatasetVersion, DatasetVersion.id == NodeCacheEntry.version_id)
             .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
             .order_by(NodeCacheEntry.node_id, NodeCacheEntry.last_used_at.desc()))
    if not who.is_operator:
        query = query.where(Dataset.tenant_id == who.tenant_id)
    found: dict[str, list[CacheEntryOut]] = {}
    for entry, version, dataset in session.execute(query):
        found.setdefault(entry.node_id, []).append(CacheEntryOut(
            dataset=dataset.name, version=short_version(version.content_hash),
            size_bytes=entry.size_bytes, added_at=entry.added_at,
            last_used_at=entry.last_used_at))
    return found


def version_out(dataset: Dataset, version: DatasetVersion) -> DatasetVersionOut:
    return DatasetVersionOut(
        id=version.id, dataset=dataset.name, number=version.number,
        version=short_version(version.content_hash), content_hash=version.content_hash,
        size_bytes=version.size_bytes, files=version.files, pushed_by=version.pushed_by,
        created_at=version.created_at)


def dataset_out(session: Session, dataset: Dataset) -> DatasetOut:
    versions = store.versions_of(session, dataset.id)
    return DatasetOut(
        id=dataset.id, name=dataset.name, tenant_id=dataset.tenant_id,
        env=dataset_env_name(dataset.name), versions=len(versions),
        latest=version_out(dataset, versions[-1]) if versions else None,
        created_by=dataset.created_by, created_at=dataset.created_at)
