"""Billing commands for tenants and operators: prices, price set, wallet, package buy, usage."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from gpucloud.billing.money import Money
from gpucloud.cli import render
from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.errors import InputError
from gpucloud.cli.output import console, print_json, timestamp
from gpucloud.core.catalog import resolve_model
from gpucloud.schemas import PriceBookOut, UsageOut
from gpucloud.usage_csv import usage_csv

price_app = typer.Typer(help="The price book (changing it: operators only).", no_args_is_help=True)
package_app = typer.Typer(help="Prepaid card-hour packages.", no_args_is_help=True)

TenantOption = Annotated[
    str | None, typer.Option(help="Tenant name or id (default: yours; others: operators).")
]


def _label(text: str) -> Text:
    return Text(f"{text:<19}", style="bold")


def print_price_book(book: PriceBookOut) -> None:
    console.print(
        f"price book v{book.version}, effective from {timestamp(book.effective_from)} "
        f"({book.currency})",
        markup=False,
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("GPU", no_wrap=True)
    table.add_column("PER GPU-HOUR", justify="right", no_wrap=True)
    for model, price in book.gpu_hour.items():
        table.add_row(model, render.money(price))
    console.print(table)
    if book.server_hour:
        servers = Table(box=None, pad_edge=False, header_style="bold")
        servers.add_column("SERVER", no_wrap=True)
        servers.add_column("PER SERVER-HOUR", justify="right", no_wrap=True)
        for model, price in book.server_hour.items():
            servers.add_row(model, render.money(price))
        console.print()
        console.print(servers)
    console.print()
    for label, value in (
        ("CPU core-hour", render.money(book.cpu_core_hour)),
        ("memory GiB-hour", render.money(book.memory_gib_hour)),
        ("storage GiB-month", render.money(book.storage_gib_month)),
        ("spot discount", f"{book.spot_discount_pct}%"),
    ):
        console.print(_label(label) + Text(value))
    if not book.packages:
        console.print(_label("packages") + Text("none"))
        return
    console.print()
    offers = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("PACKAGE", "MODEL", "GPU-HOURS", "PRICE"):
        offers.add_column(column, no_wrap=True, justify="right" if column != "PACKAGE" else "left")
    for offer in book.packages:
        offers.add_row(offer.name, offer.model, str(offer.gpu_hours), render.money(offer.price))
    console.print(offers)


def prices(as_json: JsonFlag = False) -> None:
    """The price book in force now: per GPU-hour of each model, CPU, memory, storage, packages.

    --json prints the current version and the whole history."""
    with client() as api:
        book = api.prices()
    if as_json:
        print_json(book)
        return
    print_price_book(book.current)


@price_app.command("set")
def price_set(
    model: Annotated[str, typer.Argument(help="GPU model, e.g. H100 (or a server model).")],
    per_hour: Annotated[str, typer.Argument(help="Price per GPU-hour, e.g. 28.50.")],
    server: Annotated[
        bool, typer.Option("--server", help="MODEL is a bare-metal server model: per server-hour.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Add a price-book version, effective now, with a new hourly price for MODEL."""
    with client() as api:
        if server:
            name, unit = model, "server-hour"
            book = api.set_price(server=model, server_hour=per_hour)
            price = book.server_hour.get(name)
        else:
            name, unit = resolve_model(model).name, "GPU-hour"  # a typo is refused first
            book = api.set_price(name, per_hour)
            price = book.gpu_hour.get(name)
    if as_json:
        print_json(book)
        return
    shown = render.money(price) if price is not None else per_hour
    console.print(
        f"price book v{book.version} in force from {timestamp(book.effective_from)}: "
        f"{name} {shown} per {unit}",
        markup=False,
    )


def wallet(tenant: TenantOption = None, as_json: JsonFlag = False) -> None:
    """Balance, burn rate per hour, time left at that rate, and prepaid card-hours."""
    with client() as api:
        held = api.wallet(tenant)
    if as_json:
        print_json(held)
        return
    render.print_wallet(held)


@package_app.command("buy")
def package_buy(
    offer: Annotated[str, typer.Argument(help="Offer name (see 'gpucloud prices').")],
    as_json: JsonFlag = False,
) -> None:
    """Buy a prepaid card-hour package with money from the wallet."""
    with client() as api:
        held = api.buy_package(offer)
    if as_json:
        print_json(held)
        return
    console.print(f"package {offer} bought", markup=False)
    render.print_wallet(held)


def _when(text: str | None, flag: str) -> datetime | None:
    """An ISO date or time; without a zone it is local time, as the CLI shows times."""
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"{flag}: {text!r} is not an ISO date or time; write e.g. 2026-01-31 "
            "or 2026-01-31T08:00:00+08:00"
        ) from None
    return at if at.tzinfo is not None else at.astimezone()


def _totals(rows: Sequence[UsageOut]) -> str:
    """'3.00 CNY' (one amount per currency, exact)."""
    minor: dict[str, int] = {}
    for row in rows:
        minor[row.currency] = minor.get(row.currency, 0) + row.cost_minor
    return ", ".join(f"{Money(m, c).decimal} {c}" for c, m in sorted(minor.items()))


def usage_table(rows: Sequence[UsageOut]) -> Table:
    from_packages = any(row.card_seconds_from_packages for row in rows)
    table = Table(box=None, pad_edge=False, header_style="bold")
    numbers = ("GPUS", "SECONDS", "GPU-SECONDS", "FROM PACKAGES", "COST")
    columns = ["KIND", "ID", "NAME", "MODEL", "GPUS", "SECONDS", "GPU-SECONDS"]
    columns += ["FROM PACKAGES"] if from_packages else []
    for column in (*columns, "COST", "STARTED"):
        table.add_column(column, no_wrap=True, justify="right" if column in numbers else "left")
    for row in rows:
        cells = [
            row.kind if not row.quantity else f"{row.kind} x{row.quantity}",
            row.ref_id or row.job_id or "-",
            row.job_name or "-",
            row.gpu_model or "-",
            str(row.gpus),
            str(row.seconds),
            str(row.gpu_seconds),
        ]
        cells += [str(row.card_seconds_from_packages)] if from_packages else []
        table.add_row(*cells, f"{row.cost} {row.currency}", timestamp(row.started_at))
    return table


def write_usage_csv(rows: Sequence[UsageOut]) -> None:
    sys.stdout.write(usage_csv(rows))
    sys.stdout.flush()


def usage(
    since: Annotated[
        str | None, typer.Option("--from", help="Jobs started at or after this ISO time.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--to", help="Jobs started before this ISO time.")
    ] = None,
    tenant: TenantOption = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """What each job (and each held volume or server) was charged: model, GPUs, seconds,
    GPU-seconds and cost."""
    if as_csv and as_json:
        raise InputError("--csv and --json cannot be combined; choose one")
    start, end = _when(since, "--from"), _when(until, "--to")
    with client() as api:
        rows = api.usage(tenant, start, end)
    if as_json:
        print_json(rows)
        return
    if as_csv:
        write_usage_csv(rows)
        return
    if not rows:
        console.print("no metered usage in this period", style="dim")
        return
    console.print(usage_table(rows))
    gpu_seconds = sum(row.gpu_seconds for row in rows)
    runs = sum(1 for row in rows if row.job_id is not None)
    held = len(rows) - runs
    leases = f", {held} held resource(s)" if held else ""
    console.print(
        Text("total", style="bold")
        + Text(f"  {runs} job run(s){leases}, {gpu_seconds} GPU-seconds, {_totals(rows)}")
    )


def register(app: typer.Typer) -> None:
    app.command()(prices)
    app.add_typer(price_app, name="price")
    app.command()(wallet)
    app.add_typer(package_app, name="package")
    app.command()(usage)
