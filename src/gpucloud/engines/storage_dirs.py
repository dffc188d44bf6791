"""Where volumes, dataset versions and the node caches live on disk, and the file work on them.

Layout under the storage root (local engine: ``<data dir>/storage``; Slurm: ``<shared dir>/
storage``, which every node sees)::

    volumes/<volume id>/                 a volume's data; outlives every workload
    datasets/<version id>/               a dataset version's files, read-only (0444/0555)
    node-cache/<node id>/<version id>/   a node's cached copy of a version, read-only
    uploads/<random>/                    a push being received (removed when done)

Read-only means the mode bits: the platform offers no way to change a version, and a job sees
files it cannot write; the owning Unix user could still chmod them back (see docs/storage.md).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from gpucloud.core.datasets import ContentHash
from gpucloud.core.errors import EngineError, InvalidRequest
from gpucloud.core.volumes import link_path
from gpucloud.engines.base import CacheFill, Engine, Mount

CHUNK = 1 << 20


def storage_root(engine: Engine) -> Path:
    data_dir = getattr(engine, "data_dir", None)  # the local engine: the platform's data dir
    if isinstance(data_dir, Path):
        return data_dir / "storage"
    shared = getattr(getattr(engine, "dirs", None), "root", None)  # Slurm's shared directory
    if isinstance(shared, Path):
        return shared / "storage"
    # Other engines: next to the durable per-job place every node sees.
    return Path(engine.checkpoint_dir("storage")).parent / "storage"


def volume_dir(root: Path, volume_id: str) -> Path:
    return root / "volumes" / volume_id


def version_dir(root: Path, version_id: str) -> Path:
    return root / "datasets" / version_id


def node_cache_dir(root: Path, node_id: str, version_id: str) -> Path:
    return root / "node-cache" / node_id / version_id


def _entries(path: Path) -> Iterator[os.DirEntry[str]]:
    """Everything under ``path``, children before their directory; links are not followed."""
    try:
        with os.scandir(path) as found:
            entries = list(found)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _entries(Path(entry.path))
        yield entry


def used_bytes(path: Path) -> int:
    """Apparent size of the regular files under ``path`` (links not followed), like
    ``du -s --apparent-size -b``; 0 for a missing directory."""
    total = 0
    for entry in _entries(path):
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def _files(path: Path) -> list[tuple[str, Path]]:
    """Regular files under ``path`` by relative POSIX path, sorted (the hash's order)."""
    return sorted((Path(e.path).relative_to(path).as_posix(), Path(e.path))
                  for e in _entries(path) if e.is_file(follow_symlinks=False))


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def hash_tree(path: Path) -> ContentHash:
    digest = ContentHash()
    for relative, full in _files(path):
        digest.add(relative, full.stat().st_size, _chunks(full))
    return digest


def make_read_only(path: Path) -> None:
    for entry in _entries(path):
        if not entry.is_symlink():
            Path(entry.path).chmod(0o555 if entry.is_dir() else 0o444)
    path.chmod(0o555)


def remove_tree(path: Path) -> None:
    """Remove a tree even where it was made read-only. Idempotent."""
    if not path.exists() and not path.is_symlink():
        return
    with contextlib.suppress(OSError):
        path.chmod(0o755)
    for entry in _entries(path):
        if entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(OSError):
                Path(entry.path).chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def new_upload_dir(root: Path) -> Path:
    path = root / "uploads" / secrets.token_hex(8)
    path.mkdir(parents=True)
    return path


def extract_tar(stream: IO[bytes], dest: Path) -> None:
    """Regular files and directories only, every path inside ``dest``: a link, a device or a
    path leaving the directory is refused (and nothing is kept)."""
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                if not (member.isfile() or member.isdir()):
                    raise InvalidRequest(
                        f"{member.name}: a dataset holds regular files and directories only "
                        "(links, devices and fifos are refused)"
                    )
                archive.extract(member, dest, filter="data")
    except tarfile.TarError as err:
        raise InvalidRequest(f"the upload is not a valid tar stream: {err}") from err


def install_version(staged: Path, target: Path) -> None:
    """Move a received version into place, read-only. Idempotent: a version already there
    (the same content, pushed concurrently) wins and the staged copy is dropped."""
    make_read_only(staged)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staged.rename(target)
    except OSError:
        if not target.exists():
            raise
        remove_tree(staged)
        return
    os.utime(target)  # "just installed": the garbage collector leaves young directories alone


def fill_cache(source: Path, target: Path) -> bool:
    """Copy a version into a node's cache (a real copy), read-only, atomically; False when
    the copy was already there."""
    if target.exists():
        return False
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    remove_tree(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, tmp, symlinks=True)
    make_read_only(tmp)
    try:
        tmp.rename(target)
    except OSError:
        remove_tree(tmp)
        if not target.exists():
            raise
        return False
    return True


def link_mounts(work: Path, mounts: Sequence[Mount]) -> None:
    """For engines that cannot mount (no privileges): each volume as a symlink at its requested
    path taken relative to the job's working directory (``/data`` -> ``./data``)."""
    work.mkdir(parents=True, exist_ok=True)
    for mount in mounts:
        link = work / link_path(mount.path)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            if str(link.readlink()) == mount.source:
                continue
            link.unlink()
        elif link.exists():
            raise EngineError(f"{link} already exists in the job's working directory, where "
                              f"volume {mount.source} would be linked; mount it elsewhere")
        link.symlink_to(mount.source)


def prepare_workspace(work: Path, mounts: Sequence[Mount], fills: Sequence[CacheFill]) -> None:
    """Before a command starts: its datasets copied into the node cache, its volumes linked."""
    try:
        for fill in fills:
            source = Path(fill.source)
            if not source.is_dir():
                raise EngineError(f"dataset version {source.name} is not in the dataset store "
                                  "(removed?)")
            fill_cache(source, Path(fill.target))
        link_mounts(work, mounts)
    except OSError as err:
        raise EngineError(f"cannot prepare the job's volumes and datasets: {err}") from err
