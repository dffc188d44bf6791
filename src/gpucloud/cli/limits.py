"""Quotas and budgets: 'gpucloud limits' for tenants, 'gpucloud admin limit' for operators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.table import Table

from gpucloud.billing.limits import LimitKind, Period
from gpucloud.cli.billing import TenantOption
from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.output import console, print_json, timestamp
from gpucloud.schemas import LimitOut

limit_app = typer.Typer(
    help="Quotas (GPUs at once) and budgets (card-hours or money per day, week or month).",
    no_args_is_help=True,
)

KindArgument = Annotated[
    LimitKind,
    typer.Argument(
        help="gpus or compute-units (caps on what runs at once); "
        "card-hours or spend (budgets per --per period)."
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", help="GPU model, for gpus and card-hours (default: any model)."),
]
PerOption = Annotated[
    Period | None, typer.Option("--per", help="Budget period (UTC): day, week or month.")
]


def limits(tenant: TenantOption = None, as_json: JsonFlag = False) -> None:
    """Your quotas and budgets, with what counts against each now."""
    with client() as api:
        rows = api.limits(tenant)
    if as_json:
        print_json(rows)
        return
    print_limits(rows)


def print_limits(rows: Sequence[LimitOut]) -> None:
    if not rows:
        console.print("no quotas or budgets: limited by the wallet alone", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("LIMIT", "USED", "RESETS"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(row.limit, row.used_text, timestamp(row.resets_at))
    console.print(table)


@limit_app.command("set")
def limit_set(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    kind: KindArgument,
    value: Annotated[
        str,
        typer.Argument(help="4 (GPUs), 12.8 (compute units), 100 (card-hours), 5000.00 (money)."),
    ],
    model: ModelOption = None,
    per: PerOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Cap a tenant's GPUs or set a budget; the same kind, model and period replaces it."""
    with client() as api:
        rows = api.set_limit(tenant, kind, value, model=model, period=per)
    if as_json:
        print_json(rows)
        return
    print_limits(rows)


@limit_app.command("remove")
def limit_remove(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    kind: KindArgument,
    model: ModelOption = None,
    per: PerOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Remove one of a tenant's quotas or budgets."""
    with client() as api:
        rows = api.remove_limit(tenant, kind, model=model, period=per)
    if as_json:
        print_json(rows)
        return
    print_limits(rows)


def register(app: typer.Typer) -> None:
    app.command()(limits)
