"""The file side of datasets: a pushed tar cannot escape its directory or bring links, and a
version installed read-only can still be removed."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from gpucloud.core.errors import InvalidRequest
from gpucloud.engines.storage_dirs import (
    extract_tar,
    fill_cache,
    hash_tree,
    install_version,
    remove_tree,
    used_bytes,
)


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    out.seek(0)
    return out


def test_paths_outside_the_upload_are_refused_or_kept_inside(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(InvalidRequest):
        extract_tar(tar_of((tarfile.TarInfo("../escape.txt"), b"x")), dest)
    assert not (tmp_path / "escape.txt").exists()
    extract_tar(tar_of((tarfile.TarInfo("/abs/inside.txt"), b"x")), dest)  # '/' stripped
    assert (dest / "abs" / "inside.txt").read_bytes() == b"x"


def test_links_and_devices_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(InvalidRequest, match="regular files and directories only"):
        extract_tar(tar_of((link, b"")), tmp_path)
    with pytest.raises(InvalidRequest, match="not a valid tar"):
        extract_tar(io.BytesIO(b"not a tar at all" * 100), tmp_path)


def test_a_version_is_hashed_installed_read_only_copied_and_removed(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    extract_tar(tar_of((tarfile.TarInfo("a/b.txt"), b"hello"), (tarfile.TarInfo("c"), b"!")),
                staged)
    digest = hash_tree(staged)
    assert (digest.files, digest.size) == (2, 6)
    target = tmp_path / "store" / "v1"
    install_version(staged, target)
    assert not staged.exists() and (target / "a" / "b.txt").read_bytes() == b"hello"
    assert (target / "a").stat().st_mode & 0o777 == 0o555
    assert (target / "a" / "b.txt").stat().st_mode & 0o777 == 0o444
    assert hash_tree(target).hexdigest() == digest.hexdigest()
    cache = tmp_path / "cache" / "v1"
    assert fill_cache(target, cache) and not fill_cache(target, cache)
    assert used_bytes(cache) == 6
    remove_tree(target)
    remove_tree(cache)
    assert not target.exists() and not cache.exists()
