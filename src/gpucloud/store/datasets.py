"""Datasets and their immutable versions in the database, on behalf of a caller. The files are
``engines.storage_dirs``'; a version row is written only once its files are in place."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.orm import Session

from gpucloud.core.datasets import DatasetRef, parse_dataset_ref, short_version
from gpucloud.core.errors import Conflict, InvalidRequest, NotFound
from gpucloud.core.ids import IdFactory
from gpucloud.core.states import TERMINAL
from gpucloud.core.tenancy import Principal
from gpucloud.store.models import Job
from gpucloud.store.models_workspaces import (
    Dataset,
    DatasetVersion,
    NodeCacheEntry,
)
from gpucloud.store.paging import Page, paginate


def create_dataset(session: Session, ids: IdFactory, who: Principal, name: str,
                   now: datetime) -> Dataset:
    taken = session.scalar(
        select(Dataset.id).where(Dataset.tenant_id == who.tenant_id, Dataset.name == name))
    if taken is not None:
        raise Conflict(f"a dataset named {name!r} already exists ({taken}); push a new "
                       "version to it instead")
    dataset = Dataset(id=ids.new("dst", now), tenant_id=who.tenant_id, name=name,
                      created_by=who.user_name, created_at=now)
    session.add(dataset)
    session.flush()
    return dataset


def _visible(who: Principal) -> Select[Any]:
    query = select(Dataset)
    return query if who.is_operator else query.where(Dataset.tenant_id == who.tenant_id)


def get_dataset(session: Session, who: Principal, ref: str) -> Dataset:
    """By id, or by name among the caller's datasets. Another tenant's is a 404."""
    found: Dataset | None = session.scalar(
        _visible(who).where(
            or_(Dataset.id == ref, (Dataset.name == ref) & (Dataset.tenant_id == who.tenant_id))))
    if found is None:
        raise NotFound("dataset", ref)
    return found


def list_datasets(session: Session, who: Principal, limit: int,
                  cursor: str | None) -> Page[Dataset]:
    return paginate(session, _visible(who), Dataset.id, limit, cursor)


def versions_of(session: Session, dataset_id: str) -> list[DatasetVersion]:
    """Oldest first."""
    return list(session.scalars(
        select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id)
        .order_by(DatasetVersion.number)))


def find_version(session: Session, dataset: Dataset, version: str | None) -> DatasetVersion:
    """The latest (``None``), or the one whose hash starts with ``version``."""
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
    if version is None:
        latest = session.scalar(query.order_by(DatasetVersion.number.desc()).limit(1))
        if latest is None:
            raise NotFound("version of dataset", f"{dataset.name} (it has none yet: push one)")
        return latest
    found = list(session.scalars(
        query.where(DatasetVersion.content_hash.startswith(version.lower())).limit(2)))
    if not found:
        raise NotFound("dataset version", f"{dataset.name}:{version}")
    if len(found) > 1:
        raise InvalidRequest(f"{dataset.name}:{version} names more than one version; give more "
                             "digits of the hash")
    return found[0]


def add_version(session: Session, version_id: str, dataset: Dataset, content_hash: str,
                size_bytes: int, files: int, who: Principal,
                now: datetime) -> tuple[DatasetVersion, bool]:
    """(the version, whether it is new): identical content is the existing version.
    ``version_id`` names the directory its files were installed in."""
    existing = session.scalar(select(DatasetVersion).where(
        DatasetVersion.dataset_id == dataset.id, DatasetVersion.content_hash == content_hash))
    if existing is not None:
        return existing, False
    number = session.scalar(select(func.coalesce(func.max(DatasetVersion.number), 0)).where(
        DatasetVersion.dataset_id == dataset.id)) or 0
    version = DatasetVersion(id=version_id, dataset_id=dataset.id,
                             number=number + 1, content_hash=content_hash,
                             size_bytes=size_bytes, files=files, pushed_by=who.user_name,
                             created_at=now)
    session.add(version)
    session.flush()
    return version, True


def resolve_refs(session: Session, tenant_id: str, refs: Sequence[DatasetRef]
                 ) -> list[tuple[Dataset, DatasetVersion]]:
    found = []
    for ref in refs:
        dataset = session.scalar(
            select(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.name == ref.name))
        if dataset is None:
            raise NotFound("dataset", ref.name)
        found.append((dataset, find_version(session, dataset, ref.version)))
    return found


def job_versions(session: Session, job: Job) -> list[tuple[Dataset, DatasetVersion]]:
    """The versions a job mounts (pinned at submission to ``name:<hash prefix>``)."""
    refs = [parse_dataset_ref(t) for t in job.spec.get("datasets", [])]
    return resolve_refs(session, job.tenant_id, refs) if refs else []


def users_of(session: Session, dataset: Dataset, version: DatasetVersion | None) -> list[str]:
    """Unfinished jobs that mount the dataset (or only that version of it)."""
    users = []
    for job in session.scalars(
            select(Job).where(Job.tenant_id == dataset.tenant_id,
                              Job.state.not_in(list(TERMINAL))).order_by(Job.id)):
        for text in job.spec.get("datasets", []):
            ref = parse_dataset_ref(text)
            if ref.name != dataset.name:
                continue
            if version is None or (ref.version is not None
                                   and version.content_hash.startswith(ref.version)):
                users.append(f"job {job.id} ({job.state.value.lower()})")
    return users


def remove_versions(session: Session, dataset: Dataset,
                    versions: Sequence[DatasetVersion]) -> list[str]:
    """Refused while an unfinished job mounts one of them; returns the ids whose files (and
    node-cache copies) the caller removes once this commits."""
    for version in versions:
        held = users_of(session, dataset, version)
        if held:
            raise Conflict(f"{dataset.name}:{short_version(version.content_hash)} is mounted "
                           f"by {', '.join(held)}; remove it once they have ended")
    gone = [v.id for v in versions]
    if gone:
        session.execute(delete(NodeCacheEntry).where(NodeCacheEntry.version_id.in_(gone)))
        session.execute(delete(DatasetVersion).where(DatasetVersion.id.in_(gone)))
    return gone


def remove_dataset(session: Session, dataset: Dataset) -> list[str]:
    gone = remove_versions(session, dataset, versions_of(session, dataset.id))
    session.delete(dataset)
    return gone
