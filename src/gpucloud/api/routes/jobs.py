"""/v1/jobs: submit, list, show, cancel, events and logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from gpucloud.api import idempotent
from gpucloud.api.deps import Platform, PlatformDep, PrincipalDep
from gpucloud.api.routing import api_router
from gpucloud.api.views import event_out, job_out
from gpucloud.controllers.images import check_image
from gpucloud.core.errors import ExceedsQuota, InsufficientFunds, NeverFits
from gpucloud.core.jobspec import JobSpec
from gpucloud.core.states import JobState
from gpucloud.core.tenancy import Principal, Role
from gpucloud.schemas import EventOut, JobOut, Page
from gpucloud.store import jobs as job_store
from gpucloud.store.attachments import check_attachments
from gpucloud.store.billing import affordability, footprint_of_spec
from gpucloud.store.limit_gate import LimitGate
from gpucloud.store.models import Job
from gpucloud.store.scheduling_input import fleet, never_fits_job

router = api_router(prefix="/v1/jobs", tags=["jobs"])
LOG_POLL_S = 0.25
# A file offset the OS can seek to (a larger one was a 500 mid-stream: found by schemathesis).
MAX_LOG_OFFSET = 2**63 - 1


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    responses={
        422: {"description": "invalid, or can never fit on this fleet or the tenant's limits"},
        402: {"description": "the wallet does not cover the admission runway"},
    },
)
def submit_job(
    spec: JobSpec,
    platform: PlatformDep,
    who: PrincipalDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    who.require(Role.MEMBER, "submitting jobs")
    check_can_run(platform, who, spec)
    now = platform.ctx.clock.now()

    def action(session: Any) -> Any:
        job = job_store.create_job(session, platform.ctx.ids, who, spec, now)
        return job_out(job).model_dump(mode="json")

    return idempotent.create(
        platform, who, idempotency_key, "/v1/jobs", spec.model_dump(mode="json"), action
    )


def check_can_run(platform: Platform, who: Principal, spec: JobSpec) -> None:
    """Refuse what can never run: too big for the fleet or the tenant's limits, or a wallet
    that cannot pay for the admission runway. Also for instances, whose runs are jobs."""
    # Checked before taking the write lock: the fleet's shape changes rarely, jobs often.
    with platform.ctx.db.read() as session:
        check_attachments(session, who.tenant_id, spec)  # its volumes and datasets: the tenant's
        reason = never_fits_job(fleet(session), spec)
        if reason is not None:
            raise NeverFits(
                f"{_describe(spec)} can never fit on this fleet ({reason}); "
                "ask for fewer or other resources"
            )
        fp = footprint_of_spec(spec)
        beyond = LimitGate(session, platform.ctx.clock.now()).never(
            who.tenant_id, fp, spec.max_duration_s
        )
        if beyond is not None:
            raise ExceedsQuota(f"{_describe(spec)} can never run for this tenant: {beyond}")
        funds = affordability(
            session, who.tenant_id, fp, spec.max_duration_s, platform.ctx.clock.now()
        )
        if funds is not None and not funds.covered:
            raise InsufficientFunds(funds.explain())
        check_image(session, platform.ctx.engine, who.tenant_id, spec.image)  # the tenant's


def _describe(spec: JobSpec) -> str:
    gpus = f"{spec.gpus} x {spec.gpu_type or 'any GPU'}" if spec.gpus else "no GPU"
    nodes = f"{spec.nodes} nodes, each with " if spec.nodes > 1 else ""
    return f"a job with {nodes}{gpus}, {spec.cpus:g} CPUs and {spec.memory_mib} MiB"


@router.get("", response_model=Page[JobOut])
def list_jobs(
    platform: PlatformDep,
    who: PrincipalDep,
    state: Annotated[list[JobState] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> Page[JobOut]:
    with platform.ctx.db.read() as session:
        page = job_store.list_jobs(session, who, state, limit, cursor)
        allocations = job_store.active_allocations_of(session, [j.id for j in page.items])
        return Page[JobOut](
            items=[job_out(j, allocations.get(j.id, [])) for j in page.items],
            next_cursor=page.next_cursor,
        )


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, platform: PlatformDep, who: PrincipalDep) -> JobOut:
    with platform.ctx.db.read() as session:
        job = job_store.get_job(session, who, job_id)
        return job_out(job, job_store.active_allocations(session, job.id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, platform: PlatformDep, who: PrincipalDep) -> JobOut:
    with platform.ctx.db.read() as session:
        job_store.get_job(session, who, job_id)  # 404 before 403: never reveal existence
    who.require(Role.MEMBER, "cancelling jobs")
    _retry_on_conflict(lambda: _cancel(platform, who, job_id))
    platform.wake()
    return get_job(job_id, platform, who)


def _cancel(platform: Platform, who: Principal, job_id: str) -> None:
    with platform.ctx.db.write() as session:
        job = job_store.get_job(session, who, job_id)
        job_store.cancel_job(session, job, who, platform.ctx.clock.now())


def _retry_on_conflict(action: Any, attempts: int = 5) -> None:
    """A controller may update the same job concurrently (optimistic lock): try again."""
    from sqlalchemy.orm.exc import StaleDataError

    for attempt in range(attempts):
        try:
            action()
            return
        except StaleDataError:
            if attempt == attempts - 1:
                raise


@router.get("/{job_id}/events", response_model=Page[EventOut])
def job_events(
    job_id: str,
    platform: PlatformDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 500,
    cursor: str | None = None,
) -> Page[EventOut]:
    with platform.ctx.db.read() as session:
        job_store.get_job(session, who, job_id)
        page = job_store.job_events(session, job_id, limit, cursor)
        return Page[EventOut](
            items=[event_out(e) for e in page.items], next_cursor=page.next_cursor
        )


@router.get(
    "/{job_id}/logs",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
def job_logs(
    job_id: str,
    request: Request,
    platform: PlatformDep,
    who: PrincipalDep,
    follow: bool = False,
    offset: Annotated[int, Query(ge=0, le=MAX_LOG_OFFSET)] = 0,
) -> StreamingResponse:
    """The output of the job's latest run; with ``follow``, streams until the job ends."""
    with platform.ctx.db.read() as session:
        job_store.get_job(session, who, job_id)
    return StreamingResponse(
        _log_stream(platform, request, job_id, follow, offset),
        media_type="text/plain; charset=utf-8",
    )


async def _log_stream(
    platform: Platform, request: Request, job_id: str, follow: bool, offset: int
) -> AsyncIterator[bytes]:
    # Polls with short non-blocking reads, so a client that goes away frees its worker at once.
    while True:
        finished, ref = await run_in_threadpool(_log_source, platform, job_id)
        if ref is not None:
            chunks = await run_in_threadpool(_read_logs, platform, ref, offset)
            for chunk in chunks:
                offset += len(chunk)
                yield chunk
            if chunks:
                continue
        if not follow or finished or await request.is_disconnected():
            return
        await asyncio.sleep(LOG_POLL_S)


def _read_logs(platform: Platform, ref: str, offset: int) -> list[bytes]:
    return list(platform.ctx.engine.logs(ref, follow=False, offset=offset))


def _log_source(platform: Platform, job_id: str) -> tuple[bool, str | None]:
    with platform.ctx.db.read() as session:
        job = session.get_one(Job, job_id)
        allocation = job_store.latest_allocation(session, job_id)
        return JobState(job.state).terminal, allocation.engine_ref if allocation else None
