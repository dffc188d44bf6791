"""/v1/images: the catalogue (presets and the caller's private images), show with each node's
build, ``save`` an instance's environment as a private image, delete a private one."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gpucloud.api.deps import PlatformDep, PrincipalDep
from gpucloud.api.routing import api_router
from gpucloud.controllers.images import catalogue
from gpucloud.core.errors import Conflict, NotFound
from gpucloud.core.images import DEFAULT_BASE, BuildState, Preset
from gpucloud.core.instances import Desired, InstanceState
from gpucloud.core.tenancy import Principal, Role
from gpucloud.engines import images as host
from gpucloud.engines import instance_host
from gpucloud.schemas import Page
from gpucloud.schemas.images import ImageKind, ImageOut, ImageSave, NodeBuildOut
from gpucloud.store import images as store
from gpucloud.store import instances as instance_store
from gpucloud.store.models_images import PrivateImage

router = api_router(prefix="/v1/images", tags=["images"])


@router.get("", response_model=Page[ImageOut])
def list_images(platform: PlatformDep, who: PrincipalDep) -> Page[ImageOut]:
    """Every preset, then the caller's private images (an operator sees every tenant's)."""
    presets = catalogue(platform.ctx.engine)
    with platform.ctx.db.read() as session:
        mine = store.list_private(session, who)
        items = [preset_out(p) for p in presets.values()]
        items += [private_out(i, presets.get(i.base)) for i in mine]
    return Page[ImageOut](items=items)


@router.get("/{ref}", response_model=ImageOut)
def get_image(ref: str, platform: PlatformDep, who: PrincipalDep) -> ImageOut:
    """A preset by name, or a private image by name or id (another tenant's: 404), with the
    state of its venv on each node that needed it."""
    presets = catalogue(platform.ctx.engine)
    with platform.ctx.db.read() as session:
        return _show(session, who, presets, ref)


def _show(session: Session, who: Principal, presets: dict[str, Preset], ref: str) -> ImageOut:
    private = store.get_private(session, who, ref)
    if private is not None:
        shown = private_out(private, presets.get(private.base))
        builds = store.builds_of(session, private.id)
    elif ref in presets:
        shown = preset_out(presets[ref])
        builds = store.builds_of(session, ref)
    else:
        raise NotFound("image", ref)
    nodes = [NodeBuildOut(node_id=b.node_id, state=b.state, message=b.message, builds=b.builds,
                          path=b.path, started_at=b.started_at, finished_at=b.finished_at)
             for b in builds]
    return shown.model_copy(update={"nodes": nodes})


@router.post("", status_code=201, response_model=ImageOut,
             responses={409: {"description": "the name is taken"}})
def save_image(body: ImageSave, platform: PlatformDep, who: PrincipalDep) -> ImageOut:
    """Save an instance's environment as a private image of the caller's tenant: its image
    (the base) plus a snapshot of what was installed with ``pip install`` in it (PIP_USER=1 in
    instances: the packages live in ~/.local on its disk). A job with the new image gets a
    venv of the base with that snapshot copied into it."""
    engine = platform.ctx.engine
    presets = catalogue(engine)
    now = platform.ctx.clock.now()
    with platform.ctx.db.read() as session:
        instance = instance_store.get_instance(session, who, body.instance)
        who.require(Role.MEMBER, "saving images")
        if instance.state is InstanceState.DELETED or instance.desired is Desired.DELETED:
            raise Conflict(f"instance {instance.name} is deleted: its disk is gone, there is "
                           "nothing to save")
        store.check_can_save(session, who, presets, body.name)
        source = instance_store.spec_of(instance).image
        base, parent = _base_of(session, who, presets, source)
        instance_id = instance.id
    image_id = platform.ctx.ids.new("img", now)
    sources = [host.layer_dir(engine, parent.id)] if parent is not None else []
    sources.append(host.user_site(instance_host.home_dir(engine, instance_id)))
    layer = host.save_layer(engine, image_id, sources)
    try:
        with platform.ctx.db.write() as session:
            store.create_private(session, image_id, who, presets, body.name, base, instance_id,
                                 layer.packages, layer.bytes, layer.files, now)
    except BaseException:
        host.remove_layer(engine, image_id)  # no row, no files
        raise
    return get_image(image_id, platform, who)


def _base_of(session: Session, who: Principal, presets: dict[str, Preset],
             source: str | None) -> tuple[str, PrivateImage | None]:
    """The preset a new image builds on, and the private image the instance ran (its layer
    is part of the new one)."""
    if source is None:
        return DEFAULT_BASE, None
    try:
        resolved = store.resolve(session, presets, who.tenant_id, source)
    except NotFound as err:
        raise Conflict(f"the instance's image {source!r} no longer exists; it cannot be "
                       "saved") from err
    return resolved.preset.name, resolved.private


@router.post("/{ref}/rebuild", response_model=ImageOut,
             responses={409: {"description": "no failed build to retry"}})
def rebuild_image(ref: str, platform: PlatformDep, who: PrincipalDep,
                  node: str | None = None) -> ImageOut:
    """Build a FAILED image again (on ``node``, or every node where it failed), once its cause
    is fixed: presets by operators, private images by their tenant. A READY venv is never
    rebuilt under the jobs using it."""
    engine = platform.ctx.engine
    presets = catalogue(engine)
    now = platform.ctx.clock.now()
    with platform.ctx.db.write() as session:
        private = store.get_private(session, who, ref)
        if private is None and ref not in presets:
            raise NotFound("image", ref)
        if private is None:
            who.require_operator("rebuilding a catalogue image")
        who.require(Role.MEMBER, "rebuilding images")
        rows = [b for b in store.builds_of(session, private.id if private else ref)
                if b.state is BuildState.FAILED and node in (None, b.node_id)]
        if not rows:
            where = f" on node {node}" if node else ""
            raise Conflict(f"image {ref} has no failed build{where} to retry")
        for row in rows:
            host.clear_failure(engine, row.node_id, row.recipe_key)  # the builder starts anew
            store.set_build_state(session, row, BuildState.BUILDING, now,
                                  f"rebuild requested by {who.user_name}")
    platform.wake()
    return get_image(ref, platform, who)


@router.delete("/{ref}", response_model=ImageOut)
def delete_image(ref: str, platform: PlatformDep, who: PrincipalDep) -> ImageOut:
    """Private images only. Jobs that already run keep their venv; new ones cannot use it."""
    presets = catalogue(platform.ctx.engine)
    with platform.ctx.db.write() as session:
        image = store.get_private(session, who, ref)
        if image is None:
            if ref in presets:
                raise Conflict(f"{ref!r} is a catalogue image; only private images can be "
                               "deleted")
            raise NotFound("image", ref)
        who.require(Role.MEMBER, "deleting images")
        store.delete_private(session, image, who, platform.ctx.clock.now())
        shown = private_out(image, presets.get(image.base))
    host.remove_layer(platform.ctx.engine, image.id)
    return shown


def preset_out(preset: Preset) -> ImageOut:
    return ImageOut(
        name=preset.name, kind=ImageKind.PRESET, title=preset.title,
        framework=preset.framework, framework_version=preset.framework_version,
        accelerator=preset.accelerator.value, accelerator_version=preset.accelerator_version,
        requirements=list(preset.requirements), notes=preset.notes,
    )


def private_out(image: PrivateImage, base: Preset | None) -> ImageOut:
    title = f"saved from instance {image.source_instance_id} on {image.base}"
    return ImageOut(
        name=image.name, kind=ImageKind.PRIVATE, title=title,
        framework=base.framework if base else None,
        framework_version=base.framework_version if base else None,
        accelerator=base.accelerator.value if base else "",
        accelerator_version=base.accelerator_version if base else "",
        requirements=list(base.requirements) if base else [],
        id=image.id, tenant_id=image.tenant_id, base=image.base,
        source_instance_id=image.source_instance_id, packages=list(image.packages),
        layer_bytes=image.layer_bytes, layer_files=image.layer_files,
        created_by=image.created_by, created_at=image.created_at,
    )
