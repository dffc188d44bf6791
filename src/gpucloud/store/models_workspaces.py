"""Tables of volumes, datasets and the nodes' dataset caches (issue 9)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gpucloud.core.volumes import VolumeState
from gpucloud.store.models import Base, str_enum


class Volume(Base):
    """A tenant's persistent directory (``engines.storage_dirs.volume_dir``), billed by a
    storage lease of ``size_gib`` while it exists."""

    __tablename__ = "volumes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(64))
    # The name while the volume exists, NULL once deleted (unique per tenant among the living).
    live_name: Mapped[str | None] = mapped_column(String(64))
    size_gib: Mapped[int] = mapped_column(Integer)
    state: Mapped[VolumeState] = mapped_column(str_enum(VolumeState))
    used_bytes: Mapped[int | None] = mapped_column(BigInteger)  # last measurement
    measured_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    dir_removed_at: Mapped[datetime | None]  # the directory of a deleted volume is gone
    __table_args__ = (
        Index("ix_volumes_tenant_id", "tenant_id", "id"),
        Index("ix_volumes_live_name", "tenant_id", "live_name", unique=True),
    )


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    __table_args__ = (Index("ix_datasets_name", "tenant_id", "name", unique=True),)


class DatasetVersion(Base):
    """An immutable version, named by its content hash; its files are read-only on disk."""

    __tablename__ = "dataset_versions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... in push order
    content_hash: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[int] = mapped_column(Integer)
    pushed_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    __table_args__ = (
        Index("ix_dataset_versions_hash", "dataset_id", "content_hash", unique=True),
        Index("ix_dataset_versions_number", "dataset_id", "number", unique=True),
    )


class NodeCacheEntry(Base):
    """A dataset version copied into a node's cache, and when a job last used it (LRU)."""

    __tablename__ = "node_cache_entries"
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    added_at: Mapped[datetime]
    last_used_at: Mapped[datetime]


class NodeCacheStats(Base):
    """Per node: how often a job's dataset was already in its cache."""

    __tablename__ = "node_cache_stats"
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hits: Mapped[int] = mapped_column(BigInteger)
    misses: Mapped[int] = mapped_column(BigInteger)
    evictions: Mapped[int] = mapped_column(BigInteger)


class VolumeQuota(Base):
    """An operator's quota for one tenant, in place of ``storage.volume_quota_gib``."""

    __tablename__ = "volume_quotas"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    gib: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]
