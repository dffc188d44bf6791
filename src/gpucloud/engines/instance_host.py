"""Where an instance lives on its engine: its directories, the environment a shell gets inside
it, and the address of its Jupyter server. Engine specifics for instances stay here.

Layout (local engine, under the data dir; Slurm: the shared run directory)::

    instances/<id>/home/              the instance's disk: HOME, kept across stop and start
    instances/<id>/jupyter/token      the Jupyter server's secret (0600), sent only by the proxy
    instances/<id>/jupyter/run-<n>/   Jupyter's runtime dir of run n (jpserver-<pid>.json)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpucloud.core.errors import EngineError
from gpucloud.engines.base import Engine, EngineRef


def instance_dir(engine: Engine, instance_id: str) -> Path:
    data_dir = getattr(engine, "data_dir", None)
    if isinstance(data_dir, Path):
        return data_dir / "instances" / instance_id
    # Other engines: the durable per-id place every node sees (Slurm: the shared directory).
    return Path(engine.checkpoint_dir(instance_id)).parent / "instance"


def home_dir(engine: Engine, instance_id: str) -> Path:
    return instance_dir(engine, instance_id) / "home"


def jupyter_runtime_dir(engine: Engine, instance_id: str, run: int) -> Path:
    return instance_dir(engine, instance_id) / "jupyter" / f"run-{run}"


def prepare(engine: Engine, instance_id: str, run: int, jupyter_token: str | None) -> dict[str,
                                                                                        str]:
    """Create the directories of the next run; returns the environment it needs."""
    home = home_dir(engine, instance_id)
    home.mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home)}
    if jupyter_token is not None:
        runtime = jupyter_runtime_dir(engine, instance_id, run)
        runtime.mkdir(parents=True, exist_ok=True)
        token_file = runtime.parent / "token"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(jupyter_token)
        env |= {"JUPYTER_TOKEN_FILE": str(token_file), "JUPYTER_RUNTIME_DIR": str(runtime)}
    return env


def remove(engine: Engine, instance_id: str) -> None:
    """Free the disk of a deleted instance. Idempotent."""
    shutil.rmtree(instance_dir(engine, instance_id), ignore_errors=True)


def disk_used_bytes(engine: Engine, instance_id: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(home_dir(engine, instance_id)):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total


@dataclass(frozen=True)
class JupyterAddress:
    host: str
    port: int


def jupyter_address(engine: Engine, instance_id: str, run: int) -> JupyterAddress | None:
    """The newest server of the run (a requeued run starts a new one), once it is listening."""
    runtime = jupyter_runtime_dir(engine, instance_id, run)
    try:
        infos = sorted(runtime.glob("jpserver-*.json"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return None
    for path in reversed(infos):
        try:
            info = json.loads(path.read_text())
            return JupyterAddress(str(info.get("hostname") or "127.0.0.1"), int(info["port"]))
        except (OSError, ValueError, KeyError):
            continue
    return None


@dataclass(frozen=True)
class ShellContext:
    """How to start a shell inside a running instance: as its main process runs."""

    argv: list[str]
    env: Mapping[str, str]
    cwd: str


def shell_context(engine: Engine, ref: EngineRef) -> ShellContext:
    """Local engine: a process with the run's own environment (its GPUs, HOME, volumes, the
    image's PATH) in the instance's home. Slurm would be ``srun --jobid J --overlap --pty``;
    it is not implemented (no interactive Slurm step can be tested here)."""
    data_dir = getattr(engine, "data_dir", None)
    if engine.name != "local" or not isinstance(data_dir, Path):
        raise EngineError(f"interactive shells are not available on the {engine.name} engine "
                          "yet; use the local engine")
    spec_file = data_dir / "runs" / ref / "spec.json"
    try:
        spec = json.loads(spec_file.read_text())
    except (OSError, ValueError) as err:
        raise EngineError(f"run {ref}: cannot read its environment: {err}") from err
    env = {str(k): str(v) for k, v in spec["env"].items()}
    env.setdefault("TERM", "xterm-256color")
    shell = env.get("SHELL") or "/bin/bash"
    if not Path(shell).exists():
        shell = "/bin/sh"
    cwd = env.get("HOME") or str(spec["cwd"])
    # A login shell's /etc/profile resets PATH: in an image, an interactive non-login shell
    # keeps the image's venv first on PATH, as the instance's own process has it.
    flag = "-i" if "VIRTUAL_ENV" in env else "-l"
    return ShellContext([shell, flag] if shell.endswith("bash") else [shell], env, cwd)
