"""Wallet and usage: balance, burn rate, time left, spend per day (a chart), usage per job,
and the same usage as a CSV download."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query, Request
from starlette.responses import Response

from gpucloud.api.deps import PlatformDep
from gpucloud.api.routes import billing as billing_api
from gpucloud.billing.money import Money
from gpucloud.console import charts, render, reports
from gpucloud.console.auth import Caller
from gpucloud.console.routing import console_router
from gpucloud.usage_csv import usage_csv

router = console_router()
PERIODS = (7, 30, 90)
Days = Annotated[int, Query(ge=1, le=366)]


def _since(now: datetime, days: int) -> datetime:
    return reports.days_back(now, days)[0]


@router.get("/wallet")
def wallet_page(request: Request, platform: PlatformDep, who: Caller, days: Days = 30) -> Response:
    now = platform.ctx.clock.now()
    wallet = billing_api.wallet(platform, who)
    usage = billing_api.usage(platform, who, None, _since(now, days), None)
    with platform.ctx.db.read() as session:
        spend = reports.tenant_spend(session, who.tenant_id, wallet.currency, now, days)
    context = {
        "wallet": wallet,
        "usage": list(reversed(usage)),
        "days": days,
        "periods": PERIODS,
        "rows": [(d.day, Money(d.minor, wallet.currency).decimal) for d in spend],
        "chart": charts.bar_chart(spend, wallet.currency, f"Spend per day, last {days} days",
                                  "spend"),
        "total": str(Money(sum(d.minor for d in spend), wallet.currency)),
    }
    return render.page(request, "wallet.html", context, {"live": "parts/wallet_summary.html"})




@router.get("/wallet/usage.csv")
def usage_download(platform: PlatformDep, who: Caller, days: Days = 30) -> Response:
    now = platform.ctx.clock.now()
    rows = billing_api.usage(platform, who, None, _since(now, days), None)
    name = f"gpucloud-usage-{who.tenant_name}-{now.date().isoformat()}-{days}d.csv"
    return Response(
        usage_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
