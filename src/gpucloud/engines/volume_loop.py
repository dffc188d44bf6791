"""Volumes with a hard size (``storage.volume_backend = loop``, the local engine as root): each
volume is a sparse ext4 image, ``volume-images/<id>.img`` under the storage root, loop-mounted
at its directory ``volumes/<id>/``. The file system is the volume's size, so a write past it
fails with ENOSPC in the job, whatever the job is. Sparse: the host's disk holds only what was
written (a host disk that fills first gives ENOSPC sooner; nothing reserves the space).

A volume becomes an image at its first launch (one never used takes nothing). ``ensure`` is
level-triggered and idempotent (made, mounted, grown to the size: ``truncate`` +
``losetup -c`` + ``resize2fs``, online where the kernel allows it, else unmounted while no job
uses the volume); it is called at launch and by the usage controller each
pass, so a volume unmounted by a reboot is mounted again when the control plane starts.
Whether a volume is an image is decided once, when it is first made: an existing plain
directory stays a directory (the ``directory`` backend: soft enforcement only, see
docs/storage.md), so changing the setting never hides data.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from gpucloud.core.errors import EngineError
from gpucloud.core.volumes import GIB, VolumeBackend, choose_backend
from gpucloud.engines.base import Engine

log = logging.getLogger("gpucloud.volumes")
_TOOLS = ("mkfs.ext4", "e2fsck", "resize2fs", "losetup", "mount", "umount", "findmnt")


@functools.cache
def loop_supported() -> bool:
    """Root and the ext4/loop tools: checked once per process."""
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in _TOOLS)


def backend(setting: str, engine: Engine) -> VolumeBackend:
    """``storage.volume_backend`` as it can be on this engine and machine."""
    return choose_backend(setting, engine.name == "local", loop_supported())


def image_path(root: Path, volume_id: str) -> Path:
    return root / "volume-images" / f"{volume_id}.img"


def _run(args: Sequence[str], ok: Sequence[int] = (0,)) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=120,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EngineError(f"{args[0]} failed: {err}") from err
    if done.returncode not in ok:
        raise EngineError(f"{' '.join(args)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


@contextlib.contextmanager
def _locked(root: Path, volume_id: str) -> Iterator[None]:
    """One provisioner per volume at a time (the launcher and the usage controller race)."""
    path = image_path(root, volume_id).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure(root: Path, volume_id: str, size_gib: int, backend: VolumeBackend,
           directory: Path) -> None:
    """The volume's directory exists and, for an image, is mounted at its full size."""
    image = image_path(root, volume_id)
    if not image.exists() and (backend is VolumeBackend.DIRECTORY or directory.exists()):
        directory.mkdir(parents=True, exist_ok=True)  # a directory volume, now and always
        return
    with _locked(root, volume_id):
        if not image.exists():
            tmp = image.with_suffix(".new")
            try:
                tmp.unlink(missing_ok=True)
                tmp.touch(0o600)
                os.truncate(tmp, size_gib * GIB)
                # No reserved blocks: the whole size is the tenant's. Lazy init: sparse.
                _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                      "lazy_itable_init=1,lazy_journal_init=1", str(tmp)])
            except (OSError, EngineError) as err:  # nothing to hide yet: a directory volume
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                log.warning("volume %s: no image (%s); a plain directory instead", volume_id,
                            err)
                directory.mkdir(parents=True, exist_ok=True)
                return
            tmp.replace(image)
        directory.mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(directory):
            _run(["mount", "-o", "loop", str(image), str(directory)])
        if _fs_bytes(directory) < size_gib * GIB - _SLACK:
            _grow(image, size_gib, directory)
            log.info("volume %s: grown to %s GiB", volume_id, size_gib)


# ext4 keeps its metadata inside the size (journal, inode tables): never exactly the size.
_SLACK = GIB // 8


def _fs_bytes(directory: Path) -> int:
    found = os.statvfs(directory)
    return found.f_blocks * found.f_frsize


def _grow(image: Path, size_gib: int, directory: Path) -> None:
    """Online when the kernel lets us (CAP_SYS_RESOURCE); else offline, which needs the volume
    unused: while a job has it open, ``umount`` refuses and a later pass tries again."""
    if image.stat().st_size < size_gib * GIB:
        os.truncate(image, size_gib * GIB)
    device = _run(["findmnt", "-n", "-o", "SOURCE", "--target", str(directory)]).strip()
    _run(["losetup", "-c", device])  # the loop device sees the new file size
    try:
        _run(["resize2fs", device])
        return
    except EngineError as online:
        log.info("online resize refused (%s); resizing unmounted", online)
    try:
        _run(["umount", str(directory)])
    except EngineError as busy:
        raise EngineError(f"cannot grow {directory} while it is in use; the grow is applied "
                          f"once no job uses it ({busy})") from busy
    try:
        _run(["e2fsck", "-f", "-p", str(image)], ok=(0, 1))  # 1: fixed; resize2fs wants it
        _run(["resize2fs", str(image)])
    finally:
        _run(["mount", "-o", "loop", str(image), str(directory)])


def unmount_all(root: Path) -> None:
    """Every image volume under ``root`` unmounted (their loop devices freed): for tests and
    for an operator retiring a data directory."""
    for image in sorted((root / "volume-images").glob("*.img")):
        directory = root / "volumes" / image.stem
        if os.path.ismount(directory):
            _run(["umount", str(directory)])


def remove(root: Path, volume_id: str, directory: Path) -> None:
    """Unmount and remove the image (the directory itself is removed by the caller)."""
    image = image_path(root, volume_id)
    with _locked(root, volume_id):
        if os.path.ismount(directory):
            _run(["umount", str(directory)])
        image.unlink(missing_ok=True)
    image.with_suffix(".lock").unlink(missing_ok=True)
