"""Volume names and mount requests (``NAME:/path``). Pure: no database, no I/O.

A volume is a tenant's persistent directory. A workload asks for it by name and says where it
wants it; the engine gives its real path in ``GPUCLOUD_VOLUME_<NAME>`` and mounts it at the
requested path where it can.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from gpucloud.core.errors import InvalidRequest

VOLUME_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# Paths a mount must not hide: the engine's own files and the system's.
RESERVED_MOUNT_ROOTS = ("/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/usr", "/lib")


def check_volume_name(name: str) -> str:
    if not VOLUME_NAME.match(name):
        raise InvalidRequest(
            f"volume name {name!r} is not valid: use 1-63 lower-case letters, digits and '-', "
            "starting with a letter"
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
    return mounts
