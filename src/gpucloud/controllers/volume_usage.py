"""Keeps the storage directories in line with the database, and volumes within their size.

Each pass: a deleted volume is unmounted (an image) and its directory and image removed, and
every living image volume is kept mounted and at its size (``volume_loop.ensure``: mounted again
after a reboot, grown). Every ``interval_s``: node-cache copies and dataset files whose rows are
gone (evicted, removed) are removed, and each living volume's use is measured (a ``du``-like
walk); a volume above its size becomes FULL (an event; it takes no new attachment), one back
within it AVAILABLE again. An image volume cannot go above its size (ENOSPC); a directory volume
has no quota, so writes by jobs already running are not stopped: what is enforced is said in
docs/storage.md. Level-triggered: a restart at any line converges.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from gpucloud.controllers.context import Context
from gpucloud.core.errors import EngineError
from gpucloud.core.volumes import GIB, VolumeBackend, VolumeState, usage_state
from gpucloud.engines import volume_loop
from gpucloud.engines.storage_dirs import (
    remove_tree,
    storage_root,
    used_bytes,
    volume_dir,
)
from gpucloud.store.models_workspaces import DatasetVersion, NodeCacheEntry, Volume
from gpucloud.store.volumes import set_state

log = logging.getLogger("gpucloud.volumes")
MEASURE_INTERVAL_S = 10.0
STALE_UPLOAD_S = 3600.0


class VolumeUsageController:
    name = "volume_usage"

    def __init__(self, ctx: Context, interval_s: float = MEASURE_INTERVAL_S) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self._measured_at: datetime | None = None

    def reconcile_once(self) -> None:
        root = storage_root(self.ctx.engine)
        self._remove_deleted(root)  # one small query when there is nothing to do
        self._provision(root)
        now = self.ctx.clock.now()
        last = self._measured_at
        if last is None or (now - last).total_seconds() >= self.interval_s:
            self._collect_garbage(root)
            self.measure(root)
            self._measured_at = now

    def _remove_deleted(self, root: Path) -> None:
        with self.ctx.db.read() as session:
            gone = list(session.scalars(select(Volume.id).where(
                Volume.state == VolumeState.DELETED, Volume.dir_removed_at.is_(None))))
        for volume_id in gone:
            try:
                volume_loop.remove(root, volume_id, volume_dir(root, volume_id))
            except EngineError as err:  # busy: the next pass tries again
                log.warning("volume %s: cannot unmount: %s", volume_id, err)
                continue
            remove_tree(volume_dir(root, volume_id))
            with self.ctx.db.write() as session:
                volume = session.get_one(Volume, volume_id)
                volume.dir_removed_at = self.ctx.clock.now()
            log.info("volume %s: directory removed", volume_id)

    def _provision(self, root: Path) -> None:
        """Each living image volume mounted (again, after a reboot) and at its size (after a
        grow). Volumes are made at their first launch: one never used takes nothing."""
        images = root / "volume-images"
        if not images.is_dir():
            return
        with self.ctx.db.read() as session:
            living = list(session.execute(select(Volume.id, Volume.size_gib).where(
                Volume.state != VolumeState.DELETED)))
        for volume_id, size_gib in living:
            if not volume_loop.image_path(root, volume_id).exists():
                continue
            try:
                volume_loop.ensure(root, volume_id, size_gib, VolumeBackend.LOOP,
                                   volume_dir(root, volume_id))
            except EngineError as err:  # e.g. a grow while a job uses it: the next pass
                log.warning("volume %s: %s", volume_id, err)

    def _collect_garbage(self, root: Path) -> None:
        """Files no row refers to: evicted cache copies, removed versions, stale uploads."""
        cache_root, store_root = root / "node-cache", root / "datasets"
        if not cache_root.is_dir() and not store_root.is_dir():
            return
        with self.ctx.db.read() as session:
            cached = {(node, version) for node, version in session.execute(
                select(NodeCacheEntry.node_id, NodeCacheEntry.version_id))}
            versions = set(session.scalars(select(DatasetVersion.id)))
        for node in _children(cache_root):
            for copy in _children(node):
                if (node.name, copy.name) not in cached:
                    remove_tree(copy)
        for version in _children(store_root):  # young: a push whose row is not yet written
            if version.name not in versions and _age_s(version) > STALE_UPLOAD_S:
                remove_tree(version)
        for upload in _children(root / "uploads"):
            if _age_s(upload) > STALE_UPLOAD_S:
                remove_tree(upload)

    def measure(self, root: Path) -> None:
        with self.ctx.db.read() as session:
            living = list(session.scalars(select(Volume.id).where(
                Volume.state != VolumeState.DELETED)))
        for volume_id in living:
            used = used_bytes(volume_dir(root, volume_id))
            with self.ctx.db.write() as session:
                volume = session.get_one(Volume, volume_id)
                if volume.state is VolumeState.DELETED:
                    continue
                now = self.ctx.clock.now()
                volume.used_bytes, volume.measured_at = used, now
                state = usage_state(used, volume.size_gib)
                if state is not volume.state:
                    reason = "OVER_SIZE" if state is VolumeState.FULL else "WITHIN_SIZE"
                    set_state(session, volume, state, reason, now,
                              f"{used / GIB:.2f} GiB used of {volume.size_gib} GiB"
                              + ("; no new attachments until it is grown or emptied"
                                 if state is VolumeState.FULL else ""))


def _children(path: Path) -> list[Path]:
    """Sub-directories, skipping copies in progress (dot names)."""
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except FileNotFoundError:
        return []


def _age_s(path: Path) -> float:
    return time.time() - path.stat().st_mtime
