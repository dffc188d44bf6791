"""The image catalogue, the state of an image on a node, and when a job may start. Pure.

An image is a named Python environment. A *preset* is one of the platform's catalogue entries
(pytorch, tensorflow, jax, cuda-base, ascend-cann, plus any an operator adds); a *private* image
is one a tenant saved from an instance (``gpucloud image save``): a preset plus a layer of the
packages the instance had installed. Engines realise an image on a node as a virtual
environment built once, before a job needs it, and reused by every later job (engines/images.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gpucloud.core.errors import IllegalTransition, InvalidRequest

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
DEFAULT_BASE = "cuda-base"  # what an instance without an image is saved on top of


class Accelerator(StrEnum):
    CUDA = "cuda"
    CANN = "cann"  # Huawei Ascend


@dataclass(frozen=True)
class Preset:
    """A catalogue entry: what it gives (framework, accelerator stack) and what realises it
    (pinned pip requirements installed into the node's venv). The accelerator's driver and
    toolkit belong to the node; pip brings only the Python side (torch's wheels bundle the CUDA
    runtime they need, CANN's toolkit must be installed on Ascend nodes)."""

    name: str
    title: str
    framework: str | None
    framework_version: str | None
    accelerator: Accelerator
    accelerator_version: str
    requirements: tuple[str, ...] = ()
    notes: str = ""


PRESETS: tuple[Preset, ...] = (
    Preset("cuda-base", "Python with the CUDA 12.4 runtime expected on the node", None, None,
           Accelerator.CUDA, "12.4",
           notes="no packages: a clean venv over the system Python (builds offline in a second)"),
    Preset("pytorch", "PyTorch 2.5.1 (CUDA 12.4 wheels)", "torch", "2.5.1",
           Accelerator.CUDA, "12.4",
           ("torch==2.5.1", "torchvision==0.20.1", "numpy==2.1.3")),
    Preset("tensorflow", "TensorFlow 2.18.0 with CUDA 12.5", "tensorflow", "2.18.0",
           Accelerator.CUDA, "12.5", ("tensorflow[and-cuda]==2.18.0",)),
    Preset("jax", "JAX 0.4.35 with CUDA 12 plugins", "jax", "0.4.35",
           Accelerator.CUDA, "12.6", ("jax[cuda12]==0.4.35",)),
    Preset("ascend-cann", "PyTorch 2.1.0 on Ascend NPUs (torch_npu, CANN 8.0.RC3)", "torch",
           "2.1.0", Accelerator.CANN, "8.0.RC3",
           ("torch==2.1.0", "torch-npu==2.1.0.post8", "numpy==1.26.4", "pyyaml==6.0.2",
            "decorator==5.1.1", "attrs==24.2.0", "psutil==6.1.0", "scipy==1.14.1"),
           notes="needs the CANN 8.0.RC3 toolkit and Ascend driver installed on the node"),
)


def check_name(name: str, what: str = "image name") -> str:
    if not _NAME.match(name):
        raise InvalidRequest(f"{what} {name!r}: use 1-63 lower-case letters, digits, '.', '_' "
                             "or '-', starting and ending with a letter or digit", "name")
    return name


def parse_presets(raw: object) -> tuple[Preset, ...]:
    """An operator's extra catalogue entries (a JSON list of objects with the Preset fields);
    a broken file is an error that names the entry, never a silently smaller catalogue."""
    if not isinstance(raw, list):
        raise InvalidRequest("the image catalogue file must hold a JSON list of images")
    found = []
    for number, entry in enumerate(raw, 1):
        if not isinstance(entry, dict):
            raise InvalidRequest(f"catalogue entry {number} is not an object")
        try:
            found.append(Preset(
                name=check_name(str(entry["name"])),
                title=str(entry.get("title", entry["name"])),
                framework=entry.get("framework"),
                framework_version=entry.get("framework_version"),
                accelerator=Accelerator(entry.get("accelerator", "cuda")),
                accelerator_version=str(entry.get("accelerator_version", "")),
                requirements=tuple(str(r) for r in entry.get("requirements", ())),
                notes=str(entry.get("notes", "")),
            ))
        except (KeyError, ValueError) as err:
            raise InvalidRequest(f"catalogue entry {number}: {err}") from err
    return tuple(found)


def merge_catalogue(extra: Sequence[Preset]) -> dict[str, Preset]:
    """Built-ins first; an operator entry with a built-in's name replaces it."""
    return {p.name: p for p in (*PRESETS, *extra)}


# --- what a node builds -------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """What realises an image on a node. ``key`` names the venv: a change of recipe (a new
    pin, a new layer) is a new venv, never an in-place edit of one jobs are using."""

    image: str  # the name users give
    ref: str  # the preset's name, or the private image's id
    requirements: tuple[str, ...]
    layer: str | None = None  # a private image's saved packages, copied into site-packages
    key: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(json.dumps(
            [self.ref, list(self.requirements), self.layer]).encode()).hexdigest()[:12]
        object.__setattr__(self, "key", f"{self.ref}-{digest}")


class BuildState(StrEnum):
    ABSENT = "ABSENT"
    BUILDING = "BUILDING"
    READY = "READY"
    FAILED = "FAILED"


_B = BuildState
BUILD_TRANSITIONS: Mapping[BuildState, frozenset[BuildState]] = {
    _B.ABSENT: frozenset({_B.BUILDING}),
    _B.BUILDING: frozenset({_B.READY, _B.FAILED}),
    _B.READY: frozenset({_B.BUILDING}),  # its venv vanished from the node: built again
    _B.FAILED: frozenset({_B.BUILDING}),  # an operator asked for a rebuild
}


def check_build_transition(what: str, current: BuildState, target: BuildState) -> None:
    if target not in BUILD_TRANSITIONS[current]:
        raise IllegalTransition(what, current.value, target.value)


@dataclass(frozen=True)
class Gate:
    """Whether a placed job may be launched now: yes, wait (with why), or fail (with why)."""

    launch: bool
    fail: bool = False
    message: str = ""


def launch_gate(image: str, states: Mapping[str, tuple[BuildState, str]]) -> Gate:
    """``states``: per node of the job, its image's build state and message. A failed build
    fails the job (never a silent fallback to another environment); anything not yet READY
    makes it wait, saying which node prepares what."""
    failed = [(n, msg) for n, (s, msg) in sorted(states.items()) if s is BuildState.FAILED]
    if failed:
        node, why = failed[0]
        return Gate(False, fail=True,
                    message=f"image {image} failed to build on node {node}: {why}")
    waiting = sorted(n for n, (s, _) in states.items() if s is not BuildState.READY)
    if waiting:
        return Gate(False, message=f"preparing image {image} on node {', '.join(waiting)}")
    return Gate(True)


def image_environment(venv: str, image: str, path: str) -> dict[str, str]:
    """What a job in the image gets: the venv first on PATH, as ``activate`` would do."""
    return {
        "VIRTUAL_ENV": venv,
        "PATH": f"{venv}/bin:{path}" if path else f"{venv}/bin",
        "GPUCLOUD_IMAGE": image,
    }
