"""Volume names and mount requests (``NAME:/path``). Pure: no database, no I/O.

A volume is a tenant's persistent directory. A workload asks for it by name and says where it
wants it; the engine gives its real path in ``GPUCLOUD_VOLUME_<NAME>`` and mounts it at the
requested path where it can.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

from gpucloud.core.errors import ExceedsQuota, IllegalTransition, InvalidRequest
from gpucloud.core.quantities import parse_memory_mib

VOLUME_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# Paths a mount must not hide: the engine's own files and the system's.
RESERVED_MOUNT_ROOTS = ("/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/usr", "/lib")


def check_volume_name(name: str, kind: str = "volume") -> str:
    """Also the rule for dataset names (``kind``): they become environment variable names."""
    if not VOLUME_NAME.match(name):
        raise InvalidRequest(
            f"{kind} name {name!r} is not valid: use 1-63 lower-case letters, digits and '-', "
            "starting with a letter", "name"
        )
    return name


def volume_env_name(name: str) -> str:
    """``GPUCLOUD_VOLUME_<NAME>``: upper case, '-' becomes '_' so a shell can read it."""
    return "GPUCLOUD_VOLUME_" + name.upper().replace("-", "_")


@dataclass(frozen=True)
class VolumeMount:
    name: str
    path: str
    read_only: bool = False

    def __str__(self) -> str:
        return f"{self.name}:{self.path}" + (":ro" if self.read_only else "")


def parse_mount(text: str) -> VolumeMount:
    """``NAME:/path`` or ``NAME:/path:ro``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise InvalidRequest(
            f"volume mount {text!r} is not valid: write NAME:/absolute/path (add :ro for read-only)"
        )
    name, path = check_volume_name(parts[0]), parts[1]
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise InvalidRequest(
            f"volume mount {text!r}: the path must be absolute and must not contain '..'"
        )
    normal = str(pure)
    hidden = any(normal == r or normal.startswith(r + "/") for r in RESERVED_MOUNT_ROOTS)
    if normal == "/" or hidden:
        raise InvalidRequest(f"volume mount {text!r}: {normal} is a system path; mount elsewhere")
    return VolumeMount(name, normal, read_only=len(parts) == 3 and parts[2] == "ro")


def parse_mounts(texts: Iterable[str]) -> list[VolumeMount]:
    """Each mount once: one volume at one path, one path for one volume."""
    mounts = [parse_mount(t) for t in texts]
    names = [m.name for m in mounts]
    paths = [m.path for m in mounts]
    for label, values in (("volume", names), ("path", paths)):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise InvalidRequest(
                f"each {label} may be mounted once; repeated: {', '.join(repeated)}"
            )
    # Nested paths would put one volume's link inside the other volume's data.
    for outer in paths:
        for inner in paths:
            if inner != outer and inner.startswith(outer.rstrip("/") + "/"):
                raise InvalidRequest(f"volume mounts {outer} and {inner} are nested; mount "
                                     "them side by side")
    return mounts


# --- sizes, states and the quota --------------------------------------------------------------

MAX_VOLUME_GIB = 64 * 1024
GIB = 1024**3


class VolumeBackend(StrEnum):
    """How a volume is stored (``storage.volume_backend``), fixed when it is first made."""

    LOOP = "loop"  # an ext4 image per volume, loop-mounted: a write past the size gets ENOSPC
    DIRECTORY = "directory"  # a plain directory: the size is measured, not enforced


def choose_backend(setting: str, local_engine: bool, loop_supported: bool) -> VolumeBackend:
    """Images need root, the ext4 tools and a single machine (Slurm nodes would not see a
    loop mount made by the control plane): otherwise directories, whatever the setting."""
    wanted = VolumeBackend(setting)
    if wanted is VolumeBackend.LOOP and local_engine and loop_supported:
        return VolumeBackend.LOOP
    return VolumeBackend.DIRECTORY


class VolumeState(StrEnum):
    AVAILABLE = "AVAILABLE"  # may be attached
    FULL = "FULL"  # measured above its size: no new attachment until it is grown or emptied
    DELETED = "DELETED"  # its directory is (being) removed; the name is free again


VOLUME_TRANSITIONS: Mapping[VolumeState, frozenset[VolumeState]] = {
    VolumeState.AVAILABLE: frozenset({VolumeState.FULL, VolumeState.DELETED}),
    VolumeState.FULL: frozenset({VolumeState.AVAILABLE, VolumeState.DELETED}),
    VolumeState.DELETED: frozenset(),
}


def check_volume_transition(volume_id: str, current: VolumeState, to: VolumeState) -> None:
    if to not in VOLUME_TRANSITIONS[current]:
        raise IllegalTransition(volume_id, current.value, to.value)


def parse_size_gib(text: str | int, field: str = "size") -> int:
    """``10G``, ``512Mi``, ``1T`` or a bare number of GiB; rounded up to whole GiB."""
    if isinstance(text, int) or (isinstance(text, str) and text.strip().isdigit()):
        gib = int(text)
    else:
        gib = -(-parse_memory_mib(text, field) // 1024)
    if not 1 <= gib <= MAX_VOLUME_GIB:
        raise InvalidRequest(f"{field} must be from 1 to {MAX_VOLUME_GIB} GiB, got {gib}", field)
    return gib


def check_grow(name: str, current_gib: int, new_gib: int) -> None:
    """Volumes only grow: shrinking could cut data already written."""
    if new_gib < current_gib:
        raise InvalidRequest(
            f"volume {name} is {current_gib} GiB; it cannot shrink to {new_gib} GiB (data may "
            f"already use it): give a size above {current_gib}G, or copy to a smaller volume",
            "size",
        )
    if new_gib == current_gib:
        raise InvalidRequest(f"volume {name} is already {current_gib} GiB; give a larger size",
                             "size")


def check_quota(tenant_gib: int, extra_gib: int, quota_gib: int) -> None:
    """``tenant_gib`` held now (living volumes), ``extra_gib`` more asked."""
    if tenant_gib + extra_gib > quota_gib:
        raise ExceedsQuota(
            f"volumes of this tenant would total {tenant_gib + extra_gib} GiB, above its quota "
            f"of {quota_gib} GiB ({tenant_gib} GiB held): delete volumes or ask for less, or "
            "ask the operator to raise it (gpucloud volume quota --set)"
        )


def usage_state(used_bytes: int, size_gib: int) -> VolumeState:
    """FULL once the measured use is above the size (equal is still AVAILABLE)."""
    return VolumeState.FULL if used_bytes > size_gib * GIB else VolumeState.AVAILABLE


def link_path(mount_path: str) -> PurePosixPath:
    """Where an engine that cannot mount puts a symlink to the volume: the requested absolute
    path, relative to the job's working directory (``/data/x`` -> ``./data/x``)."""
    return PurePosixPath(mount_path.lstrip("/"))
