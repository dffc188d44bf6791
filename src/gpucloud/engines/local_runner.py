"""The supervisor of one local run: ``python -m gpucloud.engines.local_runner RUN_DIR [LOCK_FD]``.

It outlives the control plane (its own session, deaf to SIGTERM/SIGINT/SIGHUP) and records what
the control plane needs to know after a restart, as files in RUN_DIR:

- ``lock``: held with flock for the runner's whole life. Held means "a supervisor is watching";
  unlike a PID it cannot be confused with an unrelated process after PID reuse.
- ``pgid``: the command's process group (the command leads its own group), for signals.
- ``started``: written once the command was spawned (or could not be).
- ``exit_code``: written atomically when the command ended, in the shell's convention.
- ``output.log``: the command's stdout and stderr.

LOCK_FD is an inherited descriptor of ``lock`` already locked by the launcher, so there is no
moment between creating the run and supervising it when the lock is free. Stdlib only, so it
starts fast and does not depend on the rest of the package.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

CANNOT_EXECUTE = 126
NOT_FOUND = 127


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A handler, not SIG_IGN: ignored dispositions would be inherited by the command."""


def _take_lock(run_dir: Path, inherited_fd: int | None) -> int:
    fd = inherited_fd
    if fd is None:
        fd = os.open(run_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    # On the inherited descriptor this succeeds (same open file, already ours); on a fresh one it
    # fails when another supervisor owns the run.
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def run(run_dir: Path, inherited_fd: int | None = None) -> int:
    lock_fd = _take_lock(run_dir, inherited_fd)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _ignore)
    spec = json.loads((run_dir / "spec.json").read_text())
    command: list[str] = [str(part) for part in spec["command"]]
    with (run_dir / "output.log").open("ab", buffering=0) as output:
        try:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={str(k): str(v) for k, v in spec["env"].items()},
                cwd=spec["cwd"],
                start_new_session=True,  # its own process group: stop() signals all of it
                close_fds=True,  # the lock must die with the supervisor, not the command
            )
        except OSError as exc:
            code = NOT_FOUND if isinstance(exc, FileNotFoundError) else CANNOT_EXECUTE
            output.write(f"gpucloud: cannot run {command[0]}: {exc}\n".encode())
            _write_atomic(run_dir / "started", "")
            _write_atomic(run_dir / "exit_code", f"{code}\n")
            return 0
        _write_atomic(run_dir / "pgid", f"{child.pid}\n")
        _write_atomic(run_dir / "started", f"{os.getpid()}\n")
        returncode = child.wait()
    # The run ends with its main process: stragglers it left in its group would keep holding
    # GPUs that are about to be given to someone else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    code = returncode if returncode >= 0 else 128 - returncode
    _write_atomic(run_dir / "exit_code", f"{code}\n")
    os.close(lock_fd)  # only now: a free lock without exit_code means the supervisor died
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m gpucloud.engines.local_runner RUN_DIR [LOCK_FD]", file=sys.stderr)
        return 2
    try:
        return run(Path(args[0]), int(args[1]) if len(args) == 2 else None)
    except BlockingIOError:
        print(f"gpucloud-runner: {args[0]} is already supervised", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
