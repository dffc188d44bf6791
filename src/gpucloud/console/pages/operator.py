"""Operator pages: the fleet (nodes x GPUs), quarantine and return, tenants with balances and
top-ups, revenue per day, and the price book. Every page checks the operator role first, by the
API's own rule (``Principal.require_operator``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Form, Query, Request
from starlette.responses import RedirectResponse, Response

from gpucloud.api.deps import PlatformDep
from gpucloud.api.routes import accounts as accounts_api
from gpucloud.api.routes import billing as billing_api
from gpucloud.api.routes import nodes as nodes_api
from gpucloud.billing.money import Money
from gpucloud.console import charts, render, reports
from gpucloud.console.auth import Caller
from gpucloud.console.routing import console_router
from gpucloud.core.catalog import MODELS
from gpucloud.core.errors import GpucloudError, InvalidRequest
from gpucloud.core.tenancy import Principal
from gpucloud.schemas import NodeOut, PriceChange, QuarantineIn, TopUp, WalletOut

router = console_router()


@dataclass(frozen=True)
class Pool:
    nodes: int
    gpus: int
    in_pool: int  # could take new work: node in service and healthy, GPU healthy and in service
    allocated: int
    quarantined: int
    retired: int


def pool_of(nodes: list[NodeOut]) -> Pool:
    gpus = [(n, d) for n in nodes for d in n.devices]
    return Pool(
        nodes=len(nodes),
        gpus=len(gpus),
        in_pool=sum(1 for n, d in gpus if in_pool(n) and usable(d)),
        allocated=sum(1 for _, d in gpus if d.allocation is not None),
        quarantined=sum(1 for _, d in gpus if d.quarantined),
        retired=sum(1 for _, d in gpus if d.retired),
    )


def in_pool(node: NodeOut) -> bool:
    return not node.quarantined and node.health == "healthy"


def usable(device: Any) -> bool:
    return bool(device.health == "healthy" and not device.quarantined and not device.retired)


def _fleet(request: Request, platform: PlatformDep, who: Principal, error: str = "",
           status: int = 200) -> Response:
    who.require_operator("the fleet page")
    nodes = nodes_api.list_nodes(platform, who, 500, None).items
    context = {"nodes": nodes, "pool": pool_of(nodes), "error": error,
               "node_in_pool": in_pool, "usable": usable}
    return render.page(request, "ops_fleet.html", context, {"grid": "parts/fleet_grid.html"},
                       status=status)


@router.get("/ops/fleet")
def fleet_page(request: Request, platform: PlatformDep, who: Caller) -> Response:
    return _fleet(request, platform, who)


@router.post("/ops/fleet/quarantine")
def quarantine(
    request: Request,
    platform: PlatformDep,
    who: Caller,
    node: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    who.require_operator("quarantining nodes")
    if not reason.strip():
        return _fleet(request, platform, who, "Give a reason for taking the node out of "
                      "service (it is shown to operators and sent to the engine).", 422)
    try:
        nodes_api.quarantine(node, QuarantineIn(reason=reason.strip()[:500]), platform, who)
    except GpucloudError as err:
        return _fleet(request, platform, who, str(err), 404 if err.code == "not_found" else 422)
    return RedirectResponse("/ops/fleet", status_code=303)


@router.post("/ops/fleet/return")
def return_node(
    request: Request,
    platform: PlatformDep,
    who: Caller,
    node: Annotated[str, Form()] = "",
    gpu: Annotated[str, Form()] = "",
) -> Response:
    who.require_operator("returning nodes to service")
    try:
        index = int(gpu) if gpu.strip() else None
        nodes_api.return_to_service(node, platform, who, index)
    except ValueError:
        return _fleet(request, platform, who, f"GPU: enter an index, got {gpu!r}", 422)
    except GpucloudError as err:
        return _fleet(request, platform, who, str(err), 404 if err.code == "not_found" else 422)
    return RedirectResponse("/ops/fleet", status_code=303)


@dataclass(frozen=True)
class TenantRow:
    id: str
    name: str
    is_operator: bool
    wallet: WalletOut


def _tenants(request: Request, platform: PlatformDep, who: Principal, error: str = "",
             done: str = "", status: int = 200) -> Response:
    who.require_operator("the tenants page")
    tenants = accounts_api.list_tenants(platform, who, 500, None).items
    rows = [TenantRow(t.id, t.name, t.is_operator, billing_api.wallet(platform, who, t.id))
            for t in tenants]
    context = {"tenants": rows, "error": error, "done": done, "key": str(uuid.uuid4())}
    return render.page(request, "ops_tenants.html", context, {"rows": "parts/tenant_rows.html"},
                       status=status)


@router.get("/ops/tenants")
def tenants_page(request: Request, platform: PlatformDep, who: Caller) -> Response:
    return _tenants(request, platform, who)


@router.post("/ops/tenants/topup")
def topup(
    request: Request,
    platform: PlatformDep,
    who: Caller,
    tenant: Annotated[str, Form()] = "",
    amount: Annotated[str, Form()] = "",
    ref: Annotated[str, Form()] = "",
    key: Annotated[str, Form()] = "",
) -> Response:
    """``key`` (written into the form) is the top-up's ref when none is typed: sending the
    same form twice tops up once."""
    who.require_operator("top-ups")
    try:
        body = TopUp(tenant=tenant, amount=amount.strip(), ref=ref.strip() or key or None)
        wallet = billing_api.topup(body, platform, who, None)
    except GpucloudError as err:
        return _tenants(request, platform, who, str(err), status=422)
    done = f"Topped up {tenant}: the balance is now {wallet.balance} {wallet.currency}."
    return _tenants(request, platform, who, done=done)


@router.get("/ops/revenue")
def revenue_page(
    request: Request,
    platform: PlatformDep,
    who: Caller,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> Response:
    who.require_operator("the revenue page")
    now = platform.ctx.clock.now()
    currency = billing_api.prices(platform, who).current.currency
    with platform.ctx.db.read() as session:
        per_day = reports.revenue(session, now, days)
    context = {
        "days": days,
        "periods": (7, 30, 90),
        "rows": [(d.day, Money(d.minor, currency).decimal) for d in per_day],
        "currency": currency,
        "total": str(Money(sum(d.minor for d in per_day), currency)),
        "chart": charts.bar_chart(per_day, currency, f"Revenue per day, last {days} days",
                                  "revenue"),
    }
    return render.page(request, "ops_revenue.html", context, {"live": "parts/revenue.html"})


def _prices(request: Request, platform: PlatformDep, who: Principal, error: str = "",
            done: str = "", status: int = 200) -> Response:
    who.require_operator("the price book page")
    book = billing_api.prices(platform, who)
    context = {"book": book, "error": error, "done": done,
               "models": [m.name for m in MODELS]}
    return render.page(request, "ops_prices.html", context, status=status)


@router.get("/ops/prices")
def prices_page(request: Request, platform: PlatformDep, who: Caller) -> Response:
    return _prices(request, platform, who)


@router.post("/ops/prices")
def set_price(
    request: Request,
    platform: PlatformDep,
    who: Caller,
    model: Annotated[str, Form()] = "",
    gpu_hour: Annotated[str, Form()] = "",
) -> Response:
    who.require_operator("changing prices")
    try:
        if not model or not gpu_hour.strip():
            raise InvalidRequest("choose a model and enter its price per GPU-hour", "gpu_hour")
        version = billing_api.change_prices(
            PriceChange(model=model, gpu_hour=gpu_hour.strip()), platform, who
        )
    except GpucloudError as err:
        return _prices(request, platform, who, str(err), status=422)
    done = (f"Price book v{version.version} is in force: {model} at "
            f"{version.gpu_hour[model].amount} {version.currency} per GPU-hour.")
    return _prices(request, platform, who, done=done)
