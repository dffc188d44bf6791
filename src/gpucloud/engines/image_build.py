"""Builds one image's venv on a node: ``python -I image_build.py BUILD_DIR``.

Detached from the control plane (its own session), like a run's supervisor, so a restart
neither kills a build nor starts it twice. Files in BUILD_DIR (the protocol with
``engines.images``):

- ``recipe.json``: what to build (requirements, an optional layer directory), written first.
- ``lock``: flock held for the whole build: held means "building".
- ``build.log``: the output of venv and pip.
- ``venv/``: the environment.
- ``ready`` or ``failed`` (the reason): written atomically once, at the end.

Stdlib only: it must start without the package's dependencies.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

PIP_TIMEOUT_S = 3600  # a framework's wheels are large; a hung index must still end the build


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _run(argv: list[str], log: Path) -> None:
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                       check=True, timeout=PIP_TIMEOUT_S)


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())[:400]


def site_packages(venv: Path) -> Path:
    """The venv's purelib: where pip installs and where a layer is copied."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / "lib" / version / "site-packages"


def build(build_dir: Path) -> None:
    recipe = json.loads((build_dir / "recipe.json").read_text())
    log = build_dir / "build.log"
    venv = build_dir / "venv"
    shutil.rmtree(venv, ignore_errors=True)  # a rebuild starts clean
    python = getattr(sys, "_base_executable", sys.executable)
    # Over the system Python's packages (the node's own CUDA-aware installs stay visible), no
    # pip of its own: the system's pip installs into the venv (sys.prefix) when it is used.
    _run([python, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], log)
    py = str(venv / "bin" / "python")
    requirements = [str(r) for r in recipe.get("requirements", [])]
    if requirements:
        probe = subprocess.run([py, "-m", "pip", "--version"], capture_output=True, check=False)
        if probe.returncode != 0:
            _run([py, "-m", "ensurepip", "--default-pip"], log)
        _run([py, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
              *requirements], log)
    layer = recipe.get("layer")
    if layer:
        shutil.copytree(layer, site_packages(venv), symlinks=True, dirs_exist_ok=True)
    # The venv is what jobs get: prove it starts before calling it ready.
    _run([py, "-c", "import sys; assert sys.prefix != sys.base_prefix"], log)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: image_build.py BUILD_DIR", file=sys.stderr)
        return 2
    build_dir = Path(args[0])
    fd = os.open(build_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another builder has it
    if (build_dir / "ready").exists() or (build_dir / "failed").exists():
        return 0
    try:
        build(build_dir)
    except subprocess.CalledProcessError as err:
        step = " ".join(str(a) for a in err.cmd[1:4])
        _write_atomic(build_dir / "failed",
                      f"{step} exited with {err.returncode}: {_tail(build_dir / 'build.log')}")
    except (OSError, ValueError, subprocess.TimeoutExpired) as err:
        _write_atomic(build_dir / "failed", f"{type(err).__name__}: {err}")
    else:
        _write_atomic(build_dir / "ready", sysconfig.get_python_version() + "\n")
    os.close(fd)  # only now: a free lock without a result means the builder died
    return 0


if __name__ == "__main__":
    sys.exit(main())
