"""Prepares images on the nodes where placed jobs need them, and holds those jobs until then.

Level-triggered: each pass looks at every SCHEDULED job that names an image, makes sure a
build row exists for each of its nodes and that a builder runs for every BUILDING row (a
restart finds the same rows and the same files), copies finished builds' results into their
rows, and then tells each job what it waits for, or fails it when its image failed to build.
The launcher asks ``images_ready`` before it launches a job (``launch_gate`` decides).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from gpucloud.controllers.context import Context
from gpucloud.core.errors import EngineError, InvalidRequest, NotFound
from gpucloud.core.images import BuildState, Gate, Preset, Recipe, launch_gate, merge_catalogue
from gpucloud.core.states import JobState, Reason
from gpucloud.engines import images as host
from gpucloud.engines.base import Engine
from gpucloud.store import images as store
from gpucloud.store.jobs import active_allocations
from gpucloud.store.models import Allocation, Job
from gpucloud.store.models_images import ImageBuild
from gpucloud.store.transitions import transition

log = logging.getLogger("gpucloud.images")


def catalogue(engine: Engine) -> dict[str, Preset]:
    """The presets of this platform: the built-ins and the operator's file."""
    return merge_catalogue(host.operator_presets(engine))


def job_recipe(session: Session, engine: Engine, job: Job) -> Recipe | None:
    """The recipe of the job's image as its tenant means the name; None without an image.
    Raises NotFound when the name means nothing to that tenant."""
    name = job.spec.get("image")
    if not name:
        return None
    resolved = store.resolve(session, catalogue(engine), job.tenant_id, str(name))
    layer = (str(host.layer_dir(engine, resolved.private.id))
             if resolved.private is not None else None)
    return resolved.recipe(layer)


def check_image(session: Session, engine: Engine, tenant_id: str, name: str | None) -> None:
    """At submit: an image the tenant cannot use is refused (NotFound names it)."""
    if name is not None:
        store.resolve(session, catalogue(engine), tenant_id, name)


def _gate(session: Session, engine: Engine, job: Job, node_ids: Sequence[str]) -> Gate:
    try:
        recipe = job_recipe(session, engine, job)
        if recipe is not None:
            host.images_root(engine)
    except host.CatalogueUnreadable as err:  # an operator's typo: wait for the fix
        return Gate(False, message=str(err))
    except (NotFound, InvalidRequest, EngineError) as err:
        return Gate(False, fail=True, message=f"image {job.spec.get('image')}: {err}")
    if recipe is None:
        return Gate(True)
    states = {}
    for node_id in node_ids:
        row = store.build_of(session, node_id, recipe.key)
        states[node_id] = ((BuildState(row.state), row.message) if row is not None
                           else (BuildState.ABSENT, ""))
    return launch_gate(recipe.image, states)


def images_ready(session: Session, engine: Engine, job: Job,
                 allocations: Sequence[Allocation]) -> bool:
    """Whether the launcher may launch the job now (its image READY on each of its nodes)."""
    if not job.spec.get("image"):
        return True
    return _gate(session, engine, job, [a.node_id for a in allocations]).launch


def image_env(session: Session, engine: Engine, job: Job, node_id: str) -> dict[str, str]:
    """VIRTUAL_ENV, PATH and GPUCLOUD_IMAGE of the job's image on the node ({} without one)."""
    recipe = job_recipe(session, engine, job)
    if recipe is None:
        return {}
    return host.job_env(engine, node_id, recipe, job.spec.get("env", {}).get("PATH"))


@dataclass(frozen=True)
class _Start:
    node_id: str
    recipe: Recipe
    rebuild: bool


class ImageController:
    name = "images"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile_once(self) -> None:
        jobs = self._placed_with_image()
        try:
            if jobs:
                self._request(jobs)
            self._sync()
        except host.CatalogueUnreadable as err:
            log.warning("%s; image builds wait until it is fixed", err)
        if jobs:
            try:
                self._hold_or_fail(jobs)
            except StaleDataError:
                log.info("a job changed while gating on its image; next pass")

    def _placed_with_image(self) -> list[str]:
        with self.ctx.db.read() as session:
            rows = session.execute(select(Job.id, Job.spec).where(
                Job.state == JobState.SCHEDULED).order_by(Job.id))
            return [job_id for job_id, spec in rows if spec.get("image")]

    def _request(self, job_ids: list[str]) -> None:
        """Build rows for every (node, image) a placed job needs; ABSENT ones start."""
        now = self.ctx.clock.now()
        engine = self.ctx.engine
        with self.ctx.db.write() as session:
            for job_id in job_ids:
                job = session.get(Job, job_id)
                if job is None or job.state != JobState.SCHEDULED:
                    continue
                try:
                    recipe = job_recipe(session, engine, job)
                    host.images_root(engine)
                except (NotFound, InvalidRequest, EngineError):
                    continue  # _hold_or_fail fails the job
                if recipe is None:
                    continue
                tenant = job.tenant_id if recipe.layer is not None else None  # private
                for allocation in active_allocations(session, job_id):
                    row = store.request_build(
                        session, self.ctx.ids, allocation.node_id, recipe, tenant,
                        str(host.venv_dir(engine, allocation.node_id, recipe.key)), now)
                    if row.state is BuildState.ABSENT:
                        store.set_build_state(session, row, BuildState.BUILDING, now,
                                              f"building {recipe.image} for job {job_id}")

    def _sync(self) -> None:
        """Every BUILDING row has a builder; finished builds' results land in their rows; a
        READY venv that vanished from its node is built again."""
        engine = self.ctx.engine
        with self.ctx.db.read() as session:
            rows = list(session.scalars(select(ImageBuild).where(
                ImageBuild.state.in_([BuildState.BUILDING, BuildState.READY]))))
            work = []
            for row in rows:
                status = host.build_status(engine, row.node_id, row.recipe_key)
                if BuildState(row.state) is BuildState.READY and (
                        status.state is BuildState.READY):
                    continue
                work.append((row.id, self._same_recipe(session, row), status))
        starts: list[_Start] = []
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            for row_id, recipe, status in work:
                row = session.get_one(ImageBuild, row_id)
                state = BuildState(row.state)
                if state is BuildState.READY:  # its venv is gone
                    store.set_build_state(session, row, BuildState.BUILDING, now,
                                          "its venv is missing on the node: building again")
                    if recipe is not None:
                        starts.append(_Start(row.node_id, recipe, rebuild=True))
                elif status.state in (BuildState.READY, BuildState.FAILED):
                    store.set_build_state(session, row, status.state, now, status.message)
                elif status.state is BuildState.ABSENT:
                    if recipe is None:
                        store.set_build_state(session, row, BuildState.FAILED, now,
                                              "its image no longer exists or has changed")
                    else:
                        starts.append(_Start(row.node_id, recipe, rebuild=False))
        # After the commit: the intent (BUILDING) is durable before the act.
        for start in starts:
            try:
                host.start_build(engine, start.node_id, start.recipe, rebuild=start.rebuild)
            except (OSError, EngineError) as err:
                log.warning("cannot start building %s on %s: %s", start.recipe.image,
                            start.node_id, err)

    def _recipe_of(self, session: Session, row: ImageBuild) -> Recipe | None:
        """The recipe a row was built from, found again by what it names."""
        cat = catalogue(self.ctx.engine)
        if row.tenant_id is None:
            preset = cat.get(row.image_ref)
            return Recipe(row.image, preset.name, preset.requirements) if preset else None
        from gpucloud.store.models_images import PrivateImage

        image = session.get(PrivateImage, row.image_ref)
        base = cat.get(image.base) if image is not None else None
        if image is None or image.live_name is None or base is None:
            return None
        return Recipe(row.image, image.id, base.requirements,
                      str(host.layer_dir(self.ctx.engine, image.id)))

    def _same_recipe(self, session: Session, row: ImageBuild) -> Recipe | None:
        """The row's recipe, unless it changed since (an operator re-pinned the preset): that
        build is then replaced by the new recipe's, on a venv of its own."""
        recipe = self._recipe_of(session, row)
        return recipe if recipe is not None and recipe.key == row.recipe_key else None

    def _hold_or_fail(self, job_ids: list[str]) -> None:
        """Say why each placed job waits, or fail it; the write lock only for a change."""
        engine = self.ctx.engine
        with self.ctx.db.read() as session:
            changes = []
            for job_id in job_ids:
                job = session.get(Job, job_id)
                if job is None or job.state != JobState.SCHEDULED:
                    continue
                nodes = [a.node_id for a in active_allocations(session, job_id)]
                gate = _gate(session, engine, job, nodes)
                if gate.fail or (not gate.launch and job.message != gate.message):
                    changes.append((job_id, gate))
        if not changes:
            return
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            for job_id, gate in changes:
                job = session.get(Job, job_id)
                if job is None or job.state != JobState.SCHEDULED:
                    continue
                if gate.fail:
                    transition(session, job, JobState.FAILED, Reason.LAUNCH_FAILED, now,
                               gate.message)
                else:
                    job.message = gate.message
