"""Datasets: names, ``name[:version]`` references, the content hash that identifies a version,
and the node cache's LRU decision. Pure: no database; the hash reads what it is handed.

A version is immutable and named by its content: the SHA-256 over its files in sorted order of
their relative paths, each contributing ``path NUL size NUL contents``. Pushing the same files
again yields the same hash, hence the same version; any change of a path or a byte yields a new
one. Empty directories carry no content and are not part of a version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gpucloud.core.errors import InvalidRequest
from gpucloud.core.volumes import check_volume_name

VERSION_CHARS = 12  # a version is shown as the first 12 hex digits of its hash
MIN_VERSION_PREFIX = 6
_HEX = re.compile(r"^[0-9a-f]+$")


def check_dataset_name(name: str) -> str:
    return check_volume_name(name, kind="dataset")


def dataset_env_name(name: str) -> str:
    """``GPUCLOUD_DATASET_<NAME>``: upper case, '-' becomes '_'."""
    return "GPUCLOUD_DATASET_" + name.upper().replace("-", "_")


def short_version(content_hash: str) -> str:
    return content_hash[:VERSION_CHARS]


@dataclass(frozen=True)
class DatasetRef:
    name: str
    version: str | None = None  # a hash prefix; None: the latest version at submission

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


def parse_dataset_ref(text: str) -> DatasetRef:
    """``name`` (latest) or ``name:version`` (at least 6 hex digits of the version's hash)."""
    name, _, version = text.partition(":")
    check_dataset_name(name)
    if not version:
        if text.endswith(":"):
            raise InvalidRequest(f"dataset {text!r}: give a version after ':' or leave it out")
        return DatasetRef(name)
    version = version.lower()
    if version == "latest":
        return DatasetRef(name)
    if not _HEX.match(version) or not MIN_VERSION_PREFIX <= len(version) <= 64:
        raise InvalidRequest(
            f"dataset {text!r}: the version is the hex hash shown by 'gpucloud dataset versions "
            f"{name}' (at least {MIN_VERSION_PREFIX} digits), or 'latest'"
        )
    return DatasetRef(name, version)


def parse_dataset_refs(texts: Iterable[str]) -> list[DatasetRef]:
    refs = [parse_dataset_ref(t) for t in texts]
    names = [r.name for r in refs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidRequest(f"each dataset may be mounted once; repeated: {', '.join(repeated)}")
    return refs


class ContentHash:
    """The version hash, fed file by file in sorted path order."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._last: str | None = None
        self.files = 0
        self.size = 0

    def add(self, path: str, size: int, chunks: Iterable[bytes]) -> None:
        if self._last is not None and path <= self._last:
            raise ValueError(f"files must come in sorted order: {path!r} after {self._last!r}")
        self._last = path
        self._sha.update(path.encode() + b"\0" + str(size).encode() + b"\0")
        seen = 0
        for chunk in chunks:
            seen += len(chunk)
            self._sha.update(chunk)
        if seen != size:
            raise ValueError(f"{path}: {seen} bytes read, {size} announced")
        self.files += 1
        self.size += size

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


# --- the node cache ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    version_id: str
    size_bytes: int
    last_used_at: datetime
    pinned: bool = False  # mounted by a job that has not ended: never evicted


def plan_eviction(entries: Sequence[CacheEntry], capacity_bytes: int,
                  incoming_bytes: int) -> list[str] | None:
    """The least recently used unpinned entries to drop so that ``incoming_bytes`` fits;
    None when it cannot fit even then (bigger than the cache, or the rest is pinned)."""
    used = sum(e.size_bytes for e in entries)
    if used + incoming_bytes <= capacity_bytes:
        return []
    evict: list[str] = []
    for entry in sorted(entries, key=lambda e: (e.last_used_at, e.version_id)):
        if entry.pinned:
            continue
        evict.append(entry.version_id)
        used -= entry.size_bytes
        if used + incoming_bytes <= capacity_bytes:
            return evict
    return None


def hit_rate(hits: int, misses: int) -> float | None:
    total = hits + misses
    return None if total == 0 else hits / total
