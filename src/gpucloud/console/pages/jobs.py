"""Jobs: the list with filters, a job's page (timeline, live logs, cost so far, why it waits),
its log tail, and cancel."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Query, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from gpucloud.api.deps import PlatformDep
from gpucloud.api.routes import billing as billing_api
from gpucloud.api.routes import jobs as jobs_api
from gpucloud.billing.money import Money
from gpucloud.console import render
from gpucloud.console.auth import Caller
from gpucloud.console.routing import console_router
from gpucloud.core.errors import GpucloudError
from gpucloud.core.jobspec import JobSpec
from gpucloud.core.states import JobState
from gpucloud.core.tenancy import Principal
from gpucloud.schemas import JobOut
from gpucloud.store import billing as billing_store

router = console_router()
FILTERS = {
    "active": [s for s in JobState if not s.terminal],
    "finished": [s for s in JobState if s.terminal],
}
SETTLE_S = 10  # a finished job's page stops updating once its last charge is surely in


@router.get("/jobs")
def job_list(
    request: Request,
    platform: PlatformDep,
    who: Caller,
    state: Annotated[list[JobState] | None, Query()] = None,
    show: str = "",
    cursor: str | None = None,
) -> Response:
    states = list(state or FILTERS.get(show, []))
    page = jobs_api.list_jobs(platform, who, states or None, 50, cursor)
    context = {
        "jobs": page.items,
        "next_cursor": page.next_cursor,
        "states": list(JobState),
        "chosen": {s.value for s in states},
        "show": show if show in FILTERS and not state else "",
        "query": request.url.query,
    }
    return render.page(request, "jobs.html", context, {"rows": "parts/job_rows.html"})


def _cost(platform: PlatformDep, who: Principal, job: JobOut) -> tuple[str, str]:
    """Charged so far (exact, from the meters) and the price per hour (the API's estimate)."""
    currency = billing_api.prices(platform, who).current.currency
    with platform.ctx.db.read() as session:
        rows = billing_store.usage(session, job.tenant_id, job.created_at, None, currency)
    charged = sum((r.cost for r in rows if r.job_id == job.id), Money.zero(currency))
    try:
        spec = JobSpec.model_validate(job_spec(job))
        per_hour = billing_api.estimate(spec, platform, who).price_per_hour
        rate = f"{per_hour.amount} {per_hour.currency}"
    except (GpucloudError, ValueError):
        rate = "-"
    return str(charged), rate


def job_spec(job: JobOut) -> dict[str, object]:
    return {
        "command": job.command, "nodes": job.nodes, "gpus": job.gpus, "gpu_type": job.gpu_type,
        "cpus": job.cpus, "memory_mib": job.memory_mib, "tier": job.tier,
        "max_duration_s": job.max_duration_s,
    }


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, platform: PlatformDep, who: Caller) -> Response:
    job = jobs_api.get_job(job_id, platform, who)
    events = jobs_api.job_events(job_id, platform, who, 500, None).items
    charged, rate = _cost(platform, who, job)
    now = platform.ctx.clock.now()
    settled = job.ended_at is not None and now - job.ended_at > timedelta(seconds=SETTLE_S)
    context = {
        "job": job,
        "events": events,
        "charged": charged,
        "rate": rate,
        "settled": settled,
        "waiting": job.state in (JobState.PENDING, JobState.QUEUED),
    }
    parts = {"summary": "parts/job_summary.html", "timeline": "parts/job_timeline.html"}
    return render.page(request, "job.html", context, parts)


@router.get("/jobs/{job_id}/log")
def job_log(
    request: Request,
    job_id: str,
    platform: PlatformDep,
    who: Caller,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The output from byte ``offset`` on (console.js polls with the bytes it has). The header
    ``X-Log-Final: 1`` says the job has ended, so this is all there will be."""
    finished = jobs_api.get_job(job_id, platform, who).state.terminal  # read before the logs
    stream: StreamingResponse = jobs_api.job_logs(job_id, request, platform, who, False, offset)
    stream.headers["X-Log-Final"] = "1" if finished else "0"
    return stream


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, platform: PlatformDep, who: Caller) -> Response:
    jobs_api.cancel_job(job_id, platform, who)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
