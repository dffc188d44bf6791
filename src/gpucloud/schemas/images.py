"""Wire shapes of the image catalogue and private images."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field

from gpucloud.core.images import BuildState
from gpucloud.schemas import Wire


class ImageKind(StrEnum):
    PRESET = "preset"  # the platform's catalogue
    PRIVATE = "private"  # saved by a tenant from an instance; only its tenant sees it


class NodeBuildOut(Wire):
    """The image's venv on one node."""

    node_id: str
    state: BuildState
    message: str
    builds: int  # how many times it was built there
    path: str
    started_at: datetime | None
    finished_at: datetime | None


class ImageOut(Wire):
    name: str
    kind: ImageKind
    title: str
    framework: str | None
    framework_version: str | None
    accelerator: str  # cuda or cann
    accelerator_version: str
    requirements: list[str]  # what pip installs into the venv
    notes: str = ""
    # Private images only:
    id: str | None = None
    tenant_id: str | None = None
    base: str | None = None
    source_instance_id: str | None = None
    packages: list[str] = Field(default_factory=list)  # in its saved layer
    layer_bytes: int | None = None
    layer_files: int | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    nodes: list[NodeBuildOut] = Field(default_factory=list)  # on show


class ImageSave(Wire):
    model_config = ConfigDict(extra="forbid", frozen=True)
    instance: str  # id or name
    name: str
