"""Tables of the image catalogue and tenants' private images (issue 9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gpucloud.core.images import BuildState
from gpucloud.store.models import Base, str_enum


class PrivateImage(Base):
    """An image a tenant saved from an instance: a preset (``base``) plus a layer of files (the
    packages the instance had installed), kept in the engine's image store."""

    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(64))
    live_name: Mapped[str | None] = mapped_column(String(64))  # NULL once deleted
    base: Mapped[str] = mapped_column(String(64))  # the preset it is built on
    source_instance_id: Mapped[str] = mapped_column(String(32))
    packages: Mapped[list[Any]]  # "name==version" of each distribution in the layer
    layer_bytes: Mapped[int] = mapped_column(BigInteger)
    layer_files: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    __table_args__ = (
        Index("ix_images_tenant_id", "tenant_id", "id"),
        Index("ix_images_live_name", "tenant_id", "live_name", unique=True),
    )


class ImageBuild(Base):
    """One image's venv on one node: ABSENT -> BUILDING -> READY | FAILED (core.images)."""

    __tablename__ = "image_builds"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128))
    recipe_key: Mapped[str] = mapped_column(String(96))  # core.images.Recipe.key
    image: Mapped[str] = mapped_column(String(64))  # the name it was asked for by
    image_ref: Mapped[str] = mapped_column(String(64))  # preset name or private image id
    tenant_id: Mapped[str | None] = mapped_column(String(32))  # private images only
    state: Mapped[BuildState] = mapped_column(str_enum(BuildState))
    message: Mapped[str] = mapped_column(Text, default="")
    builds: Mapped[int] = mapped_column(Integer, default=0)  # builds started so far
    path: Mapped[str] = mapped_column(Text)  # the venv on the node
    requested_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    __table_args__ = (
        Index("ix_image_builds_node_key", "node_id", "recipe_key", unique=True),
        Index("ix_image_builds_state", "state"),
    )
