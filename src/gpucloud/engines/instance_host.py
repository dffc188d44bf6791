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
from dataclasses import dataclass
from pathlib import Path

from gpucloud.core.errors import EngineError
from gpucloud.engines.base import Engine, EngineRef, ShellContext, ShellHost


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


def shell_context(engine: Engine, ref: EngineRef) -> ShellContext:
    """The shell of a running instance: with the run's own environment (its GPUs, HOME,
    volumes, the image's PATH), in the instance's home."""
    if not isinstance(engine, ShellHost):
        raise EngineError(f"interactive shells are not available on the {engine.name} engine")
    return engine.shell(ref)
