"""A replica's volumes and datasets at launch: their directories in the environment
(``GPUCLOUD_VOLUME_<NAME>``, ``GPUCLOUD_DATASET_<NAME>``), the mounts the engine makes, and the
node-cache copies it fills first (engines that keep one: ``caches_datasets``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.core.datasets import dataset_env_name
from gpucloud.core.volumes import parse_mounts, volume_env_name
from gpucloud.engines import volume_loop
from gpucloud.engines.base import CacheFill, Engine, Mount
from gpucloud.engines.storage_dirs import node_cache_dir, storage_root, version_dir, volume_dir
from gpucloud.store import node_cache
from gpucloud.store.datasets import job_versions
from gpucloud.store.models import Job
from gpucloud.store.models_workspaces import Volume
from gpucloud.store.settings import get_setting


@dataclass(frozen=True)
class Workspace:
    env: dict[str, str] = field(default_factory=dict)
    mounts: Sequence[Mount] = ()
    cache_fills: Sequence[CacheFill] = ()


def replica_workspace(session: Session, engine: Engine, job: Job, node_id: str,
                      now: datetime) -> Workspace:
    if not job.spec.get("volumes") and not job.spec.get("datasets"):
        return Workspace()
    root = storage_root(engine)
    env: dict[str, str] = {}
    mounts = []
    for mount in parse_mounts(job.spec.get("volumes", [])):
        volume = session.execute(select(Volume.id, Volume.size_gib).where(
            Volume.tenant_id == job.tenant_id, Volume.name == mount.name,
            Volume.live_name.is_not(None))).first()
        if volume is None:  # deleted since submission (only possible for a finished job)
            continue
        path = volume_dir(root, volume.id)
        volume_loop.ensure(root, volume.id, volume.size_gib, volume_loop.backend(
            str(get_setting(session, "storage.volume_backend")), engine), path)
        env[volume_env_name(mount.name)] = str(path)
        mounts.append(Mount(str(path), mount.path, mount.read_only))
    fills = []
    found = job_versions(session, job)
    if found and getattr(engine, "caches_datasets", False):
        pinned = node_cache.pinned_versions(session, node_id, exclude_job=job.id)
        uses = node_cache.use(session, node_id, [(v.id, v.size_bytes) for _, v in found],
                              pinned, now)
        for (dataset, version), used in zip(found, uses, strict=True):
            source = version_dir(root, version.id)
            if used.cached:
                target = node_cache_dir(root, node_id, version.id)
                fills.append(CacheFill(str(source), str(target)))
                env[dataset_env_name(dataset.name)] = str(target)
            else:  # too big for the cache now: read the dataset store directly
                env[dataset_env_name(dataset.name)] = str(source)
    else:
        for dataset, version in found:
            env[dataset_env_name(dataset.name)] = str(version_dir(root, version.id))
    return Workspace(env, tuple(mounts), tuple(fills))
