"""Real mounts for local jobs: the command runs in its own private mount namespace where each
volume is bind-mounted at its requested path (read-only for ``:ro``) and the dataset store and
node caches are bind-mounted read-only onto themselves, so even root gets EROFS there.

The wrapper is ``unshare --mount --propagation private /bin/sh -c SCRIPT sh COMMAND...``:
unshare and sh both ``exec`` (no fork), so the command keeps the supervisor's child PID and
process group, and stop, status and re-adoption after a restart work as without it. The
mounts vanish with the namespace when the command ends; the host never sees them (private
propagation). The empty mount point directories (``mkdir -p``) stay on the host.

Needs root (CAP_SYS_ADMIN) and util-linux ``unshare``; ``available()`` probes that once per
process. Without it the engine keeps the symlinks of ``storage_dirs.link_mounts``.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gpucloud.engines.base import Mount

FALLBACK_NOTE = (
    "gpucloud: volumes are linked into the working directory, not mounted (no mount namespace "
    "here: the control plane is not root or unshare is missing), so ':ro' volumes and "
    "read-only datasets are protected only by file modes\n"
)


@functools.cache
def available() -> bool:
    """True when this process can make a private mount namespace with a read-only bind mount
    (probed for real, once: a container may be root without CAP_SYS_ADMIN)."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        return False
    with tempfile.TemporaryDirectory(prefix="gpucloud-mntns-") as probe:
        script = 'mount --bind -o ro "$1" "$1" && ! touch "$1/w" 2>/dev/null'
        try:
            done = subprocess.run(
                [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script,
                 "sh", probe], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0 and not (Path(probe) / "w").exists()


def mount_script(mounts: Sequence[Mount], read_only_dirs: Sequence[Path], mkdir: str,
                 mount_bin: str) -> str:
    """The shell script that makes the mounts inside the new namespace, then execs ``$@``.
    The tools go by absolute path: the job's environment (an image's PATH) must not change
    what runs."""
    q = shlex.quote
    mkdir, mount_bin = q(mkdir), q(mount_bin)
    lines = ["set -e"]
    for path in read_only_dirs:
        where = q(str(path))
        lines.append(f"{mkdir} -p {where}; {mount_bin} --bind -o ro {where} {where}")
    for mount in mounts:
        source, target = q(mount.source), q(mount.path)
        mode = " -o ro" if mount.read_only else ""
        lines.append(f"{mkdir} -p {target}; {mount_bin} --bind{mode} {source} {target}")
        if mount.read_only:
            # The same directory is also reachable by its real path ($GPUCLOUD_VOLUME_<NAME>
            # and the working-directory link): read-only there too.
            lines.append(f"{mount_bin} --bind -o ro {source} {source}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def wrap(command: Sequence[str], mounts: Sequence[Mount],
         read_only_dirs: Sequence[Path]) -> list[str]:
    """``command`` run inside a fresh mount namespace with ``mounts`` and ``read_only_dirs``."""
    unshare = shutil.which("unshare") or "unshare"
    script = mount_script(mounts, read_only_dirs, shutil.which("mkdir") or "mkdir",
                          shutil.which("mount") or "mount")
    return [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script,
            "gpucloud-mounts", *command]
