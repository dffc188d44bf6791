"""Each node's dataset cache in the database: which versions it holds, when each was last
used (LRU), and its hits and misses. The copies themselves are made by the engine before the
job starts (``engines.storage_dirs.fill_cache``); stale directories are removed by
``controllers.volume_usage``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from gpucloud.store.scheduling_input import QueuedJob

from gpucloud.core.datasets import CacheEntry, plan_eviction
from gpucloud.core.states import HOLDS_ALLOCATION
from gpucloud.store.datasets import job_versions
from gpucloud.store.models import Allocation, Job
from gpucloud.store.models_workspaces import NodeCacheEntry, NodeCacheStats
from gpucloud.store.settings import get_setting


@dataclass(frozen=True)
class CacheUse:
    version_id: str
    hit: bool
    cached: bool  # False: it fits in no cache now, and the job reads the dataset store
    evicted: tuple[str, ...] = ()


def capacity_bytes(session: Session) -> int:
    return int(get_setting(session, "storage.node_cache_mib")) * 1024 * 1024


def _stats(session: Session, node_id: str) -> NodeCacheStats:
    row = session.get(NodeCacheStats, node_id)
    if row is None:
        row = NodeCacheStats(node_id=node_id, hits=0, misses=0, evictions=0)
        session.add(row)
    return row


def pinned_versions(session: Session, node_id: str, exclude_job: str) -> set[str]:
    """Versions that jobs holding an allocation on the node mount (never evicted)."""
    on_node = select(Allocation.job_id).where(Allocation.node_id == node_id, Allocation.active)
    jobs = session.scalars(select(Job).where(
        Job.id.in_(on_node), Job.state.in_(list(HOLDS_ALLOCATION)), Job.id != exclude_job))
    return {v.id for job in jobs for _, v in job_versions(session, job)}


def use(session: Session, node_id: str, wanted: Iterable[tuple[str, int]], pinned: set[str],
        now: datetime) -> list[CacheUse]:
    """Record that a job on ``node_id`` reads each ``(version id, size)``: a hit refreshes its
    LRU time; a miss adds it, evicting least recently used unpinned versions to make room."""
    stats = _stats(session, node_id)
    capacity = capacity_bytes(session)
    uses = []
    wanted = list(wanted)
    keep = pinned | {v for v, _ in wanted}
    for version_id, size in wanted:
        entry = session.get(NodeCacheEntry, (node_id, version_id))
        if entry is not None:
            entry.last_used_at = now
            stats.hits += 1
            uses.append(CacheUse(version_id, hit=True, cached=True))
            continue
        stats.misses += 1
        entries = [CacheEntry(e.version_id, e.size_bytes, e.last_used_at, e.version_id in keep)
                   for e in entries_of(session, node_id)]
        evict = plan_eviction(entries, capacity, size)
        if evict is None:
            uses.append(CacheUse(version_id, hit=False, cached=False))
            continue
        if evict:
            session.execute(delete(NodeCacheEntry).where(
                NodeCacheEntry.node_id == node_id, NodeCacheEntry.version_id.in_(evict)))
            stats.evictions += len(evict)
        session.add(NodeCacheEntry(node_id=node_id, version_id=version_id, size_bytes=size,
                                   added_at=now, last_used_at=now))
        session.flush()
        uses.append(CacheUse(version_id, hit=False, cached=True, evicted=tuple(evict)))
    return uses


def entries_of(session: Session, node_id: str | None = None) -> list[NodeCacheEntry]:
    query = select(NodeCacheEntry).order_by(NodeCacheEntry.node_id,
                                            NodeCacheEntry.last_used_at.desc())
    if node_id is not None:
        query = query.where(NodeCacheEntry.node_id == node_id)
    return list(session.scalars(query))


def all_stats(session: Session) -> list[NodeCacheStats]:
    return list(session.scalars(select(NodeCacheStats).order_by(NodeCacheStats.node_id)))


def cached_by_node(session: Session) -> dict[str, frozenset[str]]:
    """node -> the version ids its cache holds (the scheduler's preference input)."""
    held: dict[str, set[str]] = {}
    for node_id, version_id in session.execute(
            select(NodeCacheEntry.node_id, NodeCacheEntry.version_id)):
        held.setdefault(node_id, set()).add(version_id)
    return {node: frozenset(v) for node, v in held.items()}


def dataset_preferences(session: Session, queue: Sequence[QueuedJob]
                        ) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """For the scheduler's dataset-affinity plugin: (workload id -> the versions it reads,
    node -> the versions its cache holds). Two empty maps, after one small query, while no
    cache holds anything."""
    cached = cached_by_node(session)
    if not cached:
        return {}, {}
    wanted: dict[str, frozenset[str]] = {}
    specs = {job_id: spec for job_id, spec in session.execute(
        select(Job.id, Job.spec).where(Job.id.in_([q.job_id for q in queue])))}
    for queued in queue:
        texts = specs.get(queued.job_id, {}).get("datasets", [])
        if not texts:
            continue
        job = session.get_one(Job, queued.job_id)
        versions = frozenset(v.id for _, v in job_versions(session, job))
        wanted.update({member.id: versions for member in queued.members})
    return wanted, cached
