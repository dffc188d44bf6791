"""The tenant's dashboard: running work, GPUs in use, balance, burn rate, time left."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from gpucloud.api.deps import PlatformDep
from gpucloud.api.routes import billing as billing_api
from gpucloud.api.routes import jobs as jobs_api
from gpucloud.console import render
from gpucloud.console.auth import Caller
from gpucloud.console.routing import console_router
from gpucloud.core.states import HOLDS_ALLOCATION, JobState

router = console_router()
WAITING = [JobState.PENDING, JobState.QUEUED]


@router.get("/")
def dashboard(request: Request, platform: PlatformDep, who: Caller) -> Response:
    running = jobs_api.list_jobs(platform, who, list(HOLDS_ALLOCATION), 500, None).items
    waiting = jobs_api.list_jobs(platform, who, WAITING, 500, None).items
    recent = jobs_api.list_jobs(platform, who, None, 8, None).items
    context = {
        "wallet": billing_api.wallet(platform, who),
        "running": running,
        "waiting": waiting,
        "recent": recent,
        "gpus_in_use": sum(len(job.devices) for job in running),
    }
    return render.page(request, "dashboard.html", context, {"live": "parts/dashboard.html"})
