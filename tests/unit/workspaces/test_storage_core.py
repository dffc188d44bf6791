"""Pure rules of volumes and datasets: sizes, grow-only, the quota, FULL, states, dataset
references, the content hash and the LRU decision."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from gpucloud.core.datasets import (
    CacheEntry,
    ContentHash,
    DatasetRef,
    dataset_env_name,
    hit_rate,
    parse_dataset_ref,
    parse_dataset_refs,
    plan_eviction,
)
from gpucloud.core.errors import ExceedsQuota, IllegalTransition, InvalidRequest
from gpucloud.core.jobspec import parse_job_spec
from gpucloud.core.volumes import (
    VolumeState,
    check_grow,
    check_quota,
    check_volume_transition,
    link_path,
    parse_mounts,
    parse_size_gib,
    usage_state,
)


def test_sizes_are_whole_gib_rounded_up() -> None:
    assert parse_size_gib("10G") == 10
    assert parse_size_gib("1T") == 1024
    assert parse_size_gib("1536M") == 2
    assert parse_size_gib("7") == 7  # a bare number is GiB
    for bad in ("0", "ten", "-1G"):
        with pytest.raises(InvalidRequest):
            parse_size_gib(bad)


def test_volumes_only_grow_and_the_quota_counts_what_is_held() -> None:
    check_grow("data", 10, 20)
    with pytest.raises(InvalidRequest, match="cannot shrink to 5 GiB"):
        check_grow("data", 10, 5)
    with pytest.raises(InvalidRequest, match="already 10 GiB"):
        check_grow("data", 10, 10)
    check_quota(90, 10, 100)
    with pytest.raises(ExceedsQuota, match="total 101 GiB, above its quota of 100 GiB"):
        check_quota(90, 11, 100)


def test_full_means_above_the_size_and_states_follow_their_table() -> None:
    assert usage_state(1024**3, 1) is VolumeState.AVAILABLE
    assert usage_state(1024**3 + 1, 1) is VolumeState.FULL
    check_volume_transition("v", VolumeState.FULL, VolumeState.AVAILABLE)
    with pytest.raises(IllegalTransition):
        check_volume_transition("v", VolumeState.DELETED, VolumeState.AVAILABLE)
    assert str(link_path("/mnt/data")) == "mnt/data"
    with pytest.raises(InvalidRequest, match="nested"):
        parse_mounts(["a:/data", "b:/data/sub"])
    assert len(parse_mounts(["a:/data", "b:/data2"])) == 2


def test_dataset_references_and_their_environment_variable() -> None:
    assert parse_dataset_ref("imagenet") == DatasetRef("imagenet")
    assert parse_dataset_ref("imagenet:latest") == DatasetRef("imagenet")
    assert parse_dataset_ref("imagenet:ABCDEF12") == DatasetRef("imagenet", "abcdef12")
    for bad in ("Imagenet", "imagenet:", "imagenet:abc", "imagenet:xyz123"):
        with pytest.raises(InvalidRequest):
            parse_dataset_ref(bad)
    with pytest.raises(InvalidRequest, match="repeated: a"):
        parse_dataset_refs(["a", "a:abcdef"])
    assert dataset_env_name("image-net") == "GPUCLOUD_DATASET_IMAGE_NET"
    spec = parse_job_spec({"command": ["true"], "volumes": ["data:/mnt//x"], "datasets": ["d"]})
    assert spec.volumes == ["data:/mnt/x"] and spec.datasets == ["d"]
    with pytest.raises(InvalidRequest, match="datasets"):
        parse_job_spec({"command": ["true"], "datasets": ["Bad"]})


def test_the_content_hash_is_over_sorted_paths_sizes_and_bytes() -> None:
    digest = ContentHash()
    digest.add("a.txt", 2, [b"h", b"i"])
    digest.add("b/c.txt", 0, [])
    expected = hashlib.sha256(b"a.txt\x002\x00hi" + b"b/c.txt\x000\x00").hexdigest()
    assert digest.hexdigest() == expected and (digest.files, digest.size) == (2, 2)
    moved = ContentHash()  # the same bytes under another name are other content
    moved.add("a2.txt", 2, [b"hi"])
    assert moved.hexdigest() != ContentHash().hexdigest()
    with pytest.raises(ValueError, match="sorted"):
        digest.add("a.txt", 0, [])
    with pytest.raises(ValueError, match="announced"):
        ContentHash().add("x", 5, [b"abc"])


def test_eviction_drops_the_least_recently_used_unpinned_versions() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    entries = [CacheEntry("old", 40, t0), CacheEntry("pinned", 40, t0 - timedelta(1), True),
               CacheEntry("new", 40, t0 + timedelta(1))]
    assert plan_eviction(entries, 200, 50) == []
    assert plan_eviction(entries, 150, 50) == ["old"]
    assert plan_eviction(entries, 120, 70) == ["old", "new"]
    assert plan_eviction(entries, 120, 90) is None  # only the pinned one would be left to drop
    assert plan_eviction([], 10, 11) is None
    assert hit_rate(0, 0) is None and hit_rate(3, 1) == 0.75
