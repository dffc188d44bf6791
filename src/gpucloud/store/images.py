"""Images on behalf of a caller: the catalogue a tenant sees (presets and its own private
images), saving an instance as a private image, and the per-node build rows;
``set_build_state`` is the only door through which a build changes state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.core.errors import Conflict, NotFound
from gpucloud.core.ids import IdFactory
from gpucloud.core.images import (
    BuildState,
    Preset,
    Recipe,
    check_build_transition,
    check_name,
)
from gpucloud.core.tenancy import Principal
from gpucloud.store.models_images import ImageBuild, PrivateImage
from gpucloud.store.transitions import record_event

OBJECT_KIND = "image"


@dataclass(frozen=True)
class Resolved:
    """An image name as one tenant means it."""

    name: str
    preset: Preset  # the preset itself, or a private image's base
    private: PrivateImage | None = None

    def recipe(self, layer: str | None) -> Recipe:
        if self.private is None:
            return Recipe(self.name, self.preset.name, self.preset.requirements)
        return Recipe(self.name, self.private.id, self.preset.requirements, layer)


def private_image(session: Session, tenant_id: str, name: str) -> PrivateImage | None:
    found: PrivateImage | None = session.scalar(select(PrivateImage).where(
        PrivateImage.tenant_id == tenant_id, PrivateImage.live_name == name))
    return found


def resolve(session: Session, catalogue: dict[str, Preset], tenant_id: str,
            name: str) -> Resolved:
    """The tenant's own private image of that name, else the preset. Another tenant's private
    image does not exist for this one (NotFound, the same as a name nobody uses)."""
    mine = private_image(session, tenant_id, name)
    if mine is not None:
        base = catalogue.get(mine.base)
        if base is None:
            raise NotFound("base image of " + name, mine.base)
        return Resolved(name, base, mine)
    preset = catalogue.get(name)
    if preset is None:
        raise NotFound("image", name)
    return Resolved(name, preset)


def list_private(session: Session, who: Principal) -> list[PrivateImage]:
    query = select(PrivateImage).where(PrivateImage.live_name.is_not(None))
    if not who.is_operator:
        query = query.where(PrivateImage.tenant_id == who.tenant_id)
    return list(session.scalars(query.order_by(PrivateImage.id)))


def check_can_save(session: Session, who: Principal, catalogue: dict[str, Preset],
                   name: str) -> None:
    check_name(name)
    if name in catalogue:
        raise Conflict(f"{name!r} is a catalogue image; choose another name for yours")
    taken = private_image(session, who.tenant_id, name)
    if taken is not None:
        raise Conflict(f"you already have an image named {name!r} ({taken.id}); choose "
                       "another name or delete that one")


def create_private(session: Session, image_id: str, who: Principal,
                   catalogue: dict[str, Preset], name: str, base: str, instance_id: str,
                   packages: list[str], layer_bytes: int, layer_files: int,
                   now: datetime) -> PrivateImage:
    """The row of a saved image whose layer the caller has already copied."""
    check_can_save(session, who, catalogue, name)
    image = PrivateImage(
        id=image_id, tenant_id=who.tenant_id, name=name, live_name=name, base=base,
        source_instance_id=instance_id, packages=packages, layer_bytes=layer_bytes,
        layer_files=layer_files, created_by=who.user_name, created_at=now,
    )
    session.add(image)
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=image.id,
                 kind="image.saved", tenant_id=who.tenant_id,
                 message=f"saved from instance {instance_id} by {who.user_name} on {base}")
    session.flush()
    return image


def get_private(session: Session, who: Principal, ref: str) -> PrivateImage | None:
    """By id (operators: any tenant's) or by name among the caller's living images."""
    by_name = private_image(session, who.tenant_id, ref)
    if by_name is not None:
        return by_name
    by_id = session.get(PrivateImage, ref)
    if by_id is None or by_id.live_name is None or not who.can_see(by_id.tenant_id):
        return None
    return by_id


def delete_private(session: Session, image: PrivateImage, who: Principal,
                   now: datetime) -> None:
    image.live_name, image.deleted_at = None, now
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=image.id,
                 kind="image.deleted", tenant_id=image.tenant_id,
                 message=f"deleted by {who.user_name}")


# --- builds -------------------------------------------------------------------------------------


def build_of(session: Session, node_id: str, key: str) -> ImageBuild | None:
    found: ImageBuild | None = session.scalar(select(ImageBuild).where(
        ImageBuild.node_id == node_id, ImageBuild.recipe_key == key))
    return found


def builds_of(session: Session, ref: str) -> list[ImageBuild]:
    return list(session.scalars(select(ImageBuild).where(ImageBuild.image_ref == ref)
                                .order_by(ImageBuild.node_id)))


def request_build(session: Session, ids: IdFactory, node_id: str, recipe: Recipe,
                  tenant_id: str | None, path: str, now: datetime) -> ImageBuild:
    """The build row of (node, recipe), created ABSENT when none exists."""
    row = build_of(session, node_id, recipe.key)
    if row is None:
        row = ImageBuild(id=ids.new("imb", now), node_id=node_id, recipe_key=recipe.key,
                         image=recipe.image, image_ref=recipe.ref, tenant_id=tenant_id,
                         state=BuildState.ABSENT, message="", builds=0, path=path,
                         requested_at=now)
        session.add(row)
        session.flush()
    return row


def set_build_state(session: Session, row: ImageBuild, to: BuildState, now: datetime,
                    message: str = "") -> None:
    current = BuildState(row.state)
    check_build_transition(f"image build {row.id}", current, to)
    record_event(session, at=now, object_kind=OBJECT_KIND, object_id=row.image_ref,
                 kind="image.build", tenant_id=row.tenant_id, before=current.value,
                 after=to.value, message=f"node {row.node_id}: {message}".rstrip(": "))
    row.state, row.message = to, message
    if to is BuildState.BUILDING:
        row.builds += 1
        row.started_at, row.finished_at = now, None
    else:
        row.finished_at = now
