"""Where images live on an engine and how a node realises one: a venv built once by a detached
builder (``engines/image_build.py``), then reused by every job. Engine specifics for images
stay here.

Layout (local engine: under the data dir; Slurm: the shared directory every node sees)::

    images/catalogue.json                 optional: the operator's extra presets (a JSON list)
    images/nodes/<node>/<recipe key>/     a build: recipe.json, lock, build.log, venv/, ready/failed
    images/private/<image id>/layer/      a saved image's packages (a copy of an instance's)

On the local engine every simulated node is a directory of its own, so "built once per node"
is literal. On Slurm the control plane builds on the shared file system (one machine here; on a
real cluster the nodes must share the head node's OS and Python); Apptainer and enroot are not
used (neither is installed here).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gpucloud.core.errors import EngineError, InvalidRequest
from gpucloud.core.images import BuildState, Preset, Recipe, image_environment, parse_presets
from gpucloud.engines import image_build
from gpucloud.engines.base import Engine

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def images_root(engine: Engine) -> Path:
    data_dir = getattr(engine, "data_dir", None)
    if isinstance(data_dir, Path):
        return data_dir / "images"
    dirs = getattr(engine, "dirs", None)  # Slurm: engines.slurm.rundir.RunDirs
    root = getattr(dirs, "root", None)
    if isinstance(root, Path):
        return root / "images"
    raise EngineError(f"images are not available on the {engine.name} engine")


class CatalogueUnreadable(EngineError):
    """The operator's catalogue file is broken: an operator fixes it; jobs wait meanwhile."""


def operator_presets(engine: Engine) -> tuple[Preset, ...]:
    try:
        path = images_root(engine) / "catalogue.json"
    except EngineError:
        return ()  # an engine without an image store: the built-in presets only
    try:
        return parse_presets(json.loads(path.read_text()))
    except FileNotFoundError:
        return ()
    except (OSError, ValueError, InvalidRequest) as err:
        raise CatalogueUnreadable(f"the image catalogue {path} is broken: {err}") from err


def _safe(part: str) -> str:
    if not part or "/" in part or part in (".", ".."):
        raise EngineError(f"invalid path component {part!r}")
    return part


def build_dir(engine: Engine, node_id: str, key: str) -> Path:
    return images_root(engine) / "nodes" / _safe(node_id) / _safe(key)


def venv_dir(engine: Engine, node_id: str, key: str) -> Path:
    return build_dir(engine, node_id, key) / "venv"


def layer_dir(engine: Engine, image_id: str) -> Path:
    return images_root(engine) / "private" / _safe(image_id) / "layer"


def start_build(engine: Engine, node_id: str, recipe: Recipe, rebuild: bool = False) -> None:
    """Start the builder unless one runs or finished (idempotent); ``rebuild`` clears a
    previous result first."""
    where = build_dir(engine, node_id, recipe.key)
    where.mkdir(parents=True, exist_ok=True)
    if _locked(where):
        return
    if rebuild:
        for name in ("ready", "failed", "recipe.json"):
            (where / name).unlink(missing_ok=True)
    elif (where / "ready").exists() or (where / "failed").exists():
        return
    tmp = where / "recipe.json.tmp"
    tmp.write_text(json.dumps({"image": recipe.image, "requirements": list(recipe.requirements),
                               "layer": recipe.layer}))
    tmp.replace(where / "recipe.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCLOUD_")}
    with (where / "builder.log").open("ab") as out:
        subprocess.Popen(
            [sys.executable, "-I", image_build.__file__, str(where)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # outlives the control plane, like a run's supervisor
        )


def clear_failure(engine: Engine, node_id: str, key: str) -> None:
    """Forget a failed build's result, so that the next builder starts afresh."""
    where = build_dir(engine, node_id, key)
    if not _locked(where):
        (where / "failed").unlink(missing_ok=True)


@dataclass(frozen=True)
class BuildStatus:
    state: BuildState
    message: str = ""


def build_status(engine: Engine, node_id: str, key: str) -> BuildStatus:
    """What the files say. The builder writes its result before it lets go of the lock, so a
    free lock with no result means it is not running (not started yet, or it died)."""
    where = build_dir(engine, node_id, key)
    if _locked(where):
        return BuildStatus(BuildState.BUILDING, "building")
    if (where / "ready").exists():
        if (where / "venv" / "bin" / "python").exists():
            return BuildStatus(BuildState.READY)
        return BuildStatus(BuildState.ABSENT, "its venv is missing")
    failed = where / "failed"
    if failed.exists():
        return BuildStatus(BuildState.FAILED, failed.read_text().strip() or "the build failed")
    if (where / "recipe.json").exists():
        return BuildStatus(BuildState.ABSENT, "the builder is not running")
    return BuildStatus(BuildState.ABSENT)


def _locked(where: Path) -> bool:
    try:
        fd = os.open(where / "lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def job_env(engine: Engine, node_id: str, recipe: Recipe, user_path: str | None) -> dict[str,
                                                                                       str]:
    """The environment a job in the image gets on that node (PATH keeps the user's own, or
    the one jobs get from the control plane, behind the venv)."""
    path = user_path or os.environ.get("PATH") or DEFAULT_PATH
    return image_environment(str(venv_dir(engine, node_id, recipe.key)), recipe.image, path)


# --- saving an instance's environment -----------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    files: int
    bytes: int
    packages: list[str]  # name==version of each distribution found in it


def user_site(home: Path) -> Path:
    """Where ``pip install --user`` (PIP_USER=1 in instances) puts packages for this Python."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return home / ".local" / "lib" / version / "site-packages"


def save_layer(engine: Engine, image_id: str, sources: list[Path]) -> Layer:
    """Copy ``sources`` (a parent image's layer, then the instance's user site) into the new
    image's layer: a snapshot, so later changes in the instance never reach the image."""
    target = layer_dir(engine, image_id)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for source in sources:
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    return inspect_layer(target)


def inspect_layer(path: Path) -> Layer:
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                size += (Path(root) / name).lstat().st_size
            except OSError:
                continue
            files += 1
    packages = []
    for meta in sorted(path.glob("*.dist-info/METADATA")):
        fields = dict(line.split(": ", 1) for line in meta.read_text(errors="replace")
                      .splitlines() if ": " in line and not line.startswith(" "))
        if "Name" in fields:
            packages.append(f"{fields['Name']}=={fields.get('Version', '?')}")
    return Layer(files, size, packages)


def remove_layer(engine: Engine, image_id: str) -> None:
    shutil.rmtree(layer_dir(engine, image_id).parent, ignore_errors=True)
