"""Wire shapes of volumes, datasets and the node dataset caches."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field

from gpucloud.core.volumes import VolumeState
from gpucloud.schemas import EventOut, Wire


class VolumeCreate(Wire):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(examples=["scratch"])]
    size: Annotated[str, Field(examples=["10G"], description="e.g. 10G, 1T (whole GiB)")]


class VolumeGrow(Wire):
    model_config = ConfigDict(extra="forbid", frozen=True)
    size: Annotated[str, Field(examples=["20G"], description="the new size, larger")]


class VolumeQuotaIn(Wire):
    model_config = ConfigDict(extra="forbid", frozen=True)
    gib: Annotated[int | None, Field(ge=0, description="None: the platform's default")]


class VolumeQuotaOut(Wire):
    tenant_id: str
    quota_gib: int
    used_gib: int  # sizes of the tenant's living volumes
    own: bool  # set for this tenant (else the platform's storage.volume_quota_gib)


class VolumeOut(Wire):
    id: str
    name: str
    tenant_id: str
    state: VolumeState
    size_gib: int
    used_bytes: int | None  # the last measurement (None until the first)
    measured_at: datetime | None
    env: str  # GPUCLOUD_VOLUME_<NAME>: where a workload finds it
    attached_to: list[str] = Field(default_factory=list)  # unfinished workloads holding it
    price_per_hour_minor: int
    currency: str
    created_by: str
    created_at: datetime
    deleted_at: datetime | None
    events: list[EventOut] = Field(default_factory=list)  # on show: the latest, oldest first


class DatasetCreate(Wire):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(examples=["imagenet-mini"])]


class DatasetVersionOut(Wire):
    id: str
    dataset: str
    number: int  # 1, 2, ... in push order
    version: str  # the first 12 hex digits of the content hash: mount it as name:version
    content_hash: str  # sha256 over the sorted relative paths and contents
    size_bytes: int
    files: int
    pushed_by: str
    created_at: datetime
    created: bool = False  # on push: False when identical content already was this version


class DatasetOut(Wire):
    id: str
    name: str
    tenant_id: str
    env: str  # GPUCLOUD_DATASET_<NAME>
    versions: int
    latest: DatasetVersionOut | None
    created_by: str
    created_at: datetime


class CacheEntryOut(Wire):
    dataset: str
    version: str
    size_bytes: int
    added_at: datetime
    last_used_at: datetime


class NodeCacheOut(Wire):
    node_id: str
    capacity_bytes: int
    used_bytes: int  # of every tenant's versions in it
    hits: int
    misses: int
    evictions: int
    hit_rate: float | None  # hits / (hits + misses); None before the first use
    entries: list[CacheEntryOut] = Field(default_factory=list)  # the caller's versions only
