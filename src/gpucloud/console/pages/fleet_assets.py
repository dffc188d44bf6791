"""Operator page of the asset register: every asset's cost per day and per GPU-hour against
its revenue (the fleet report), and the bare-metal servers with their state, holder and
reason. Built on the API's own handlers, so the page and ``gpucloud fleet report`` agree."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from starlette.responses import Response

from gpucloud.api.deps import PlatformDep
from gpucloud.api.routes import assets as assets_api
from gpucloud.api.routes import baremetal as baremetal_api
from gpucloud.console import render
from gpucloud.console.auth import Caller
from gpucloud.console.routing import console_router

router = console_router()


@router.get("/ops/assets")
def assets_page(
    request: Request,
    platform: PlatformDep,
    who: Caller,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> Response:
    who.require_operator("the asset register page")
    report = assets_api.report(platform, who, days, "0.15")
    servers = baremetal_api.list_servers(platform, who, True).items
    assets = assets_api.list_assets(platform, who, None, False, 500, None).items
    context = {"report": report, "servers": servers, "assets": assets, "days": days,
               "periods": (7, 30, 90)}
    return render.page(request, "ops_assets.html", context)
