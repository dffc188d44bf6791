"""``gpucloud fleet ...``: the operator's asset register (import, list, show, update, retire),
BMC logins, and the cost report."""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.errors import CliError, InputError
from gpucloud.cli.output import console, err_console, print_json
from gpucloud.client.client import ApiError
from gpucloud.core.fleet import InvalidAssets
from gpucloud.fleet_import import read_file
from gpucloud.schemas.fleet import AssetOut, FleetReportOut

fleet_app = typer.Typer(help="The asset register: servers, switches, storage; cost report "
                             "(operators).", no_args_is_help=True)
BMC_PASSWORD_ENV = "GPUCLOUD_BMC_PASSWORD"


def _problems(source: str, message: str) -> CliError:
    """Every problem on its own line (they name their lines), then one summary error."""
    head, _, rest = message.partition("\n")
    for line in rest.splitlines():
        err_console.print(f"  {source}: {line}", markup=False)
    return CliError(f"{source}: {head.rstrip(':')} (each shown above with its line)", 2)


@fleet_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A .yaml or .csv file (see docs/fleet.md).")],
    as_json: JsonFlag = False,
) -> None:
    """Create or update assets by name, all or nothing; importing the same file again changes
    nothing. Every problem is shown with its line, and then nothing is changed."""
    try:
        records = read_file(file)
    except InvalidAssets as err:
        if len(err.problems) == 1:
            raise InputError(f"{file}: {err.problems[0]}") from None
        raise _problems(str(file), str(err)) from None
    if not records:
        raise InputError(f"{file}: no assets in it")
    with client() as api:
        try:
            result = api.import_assets(records)
        except ApiError as err:
            if err.status == 422 and "\n" in err.detail:
                raise _problems(str(file), err.detail) from None
            raise
    if as_json:
        print_json(result)
        return
    console.print(f"{len(result.created)} created, {len(result.updated)} updated, "
                  f"{len(result.unchanged)} unchanged", markup=False)
    for word, names in (("created", result.created), ("updated", result.updated)):
        for name in names:
            console.print(f"  {word} {name}", markup=False)


@fleet_app.command("list")
def list_(
    kind: Annotated[str | None, typer.Option(help="server, switch or storage.")] = None,
    retired: Annotated[bool, typer.Option("--retired", help="Include retired assets.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Every asset: kind, role, model, accelerators, place and the engine node matched to it."""
    with client() as api:
        assets = api.list_assets(kind, retired)
    if as_json:
        print_json(assets)
        return
    if not assets:
        console.print("no assets: import some with 'gpucloud fleet import FILE'", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "KIND", "ROLE", "MODEL", "HARDWARE", "RACK", "NODE", "NOTES"):
        table.add_column(column, no_wrap=column in ("NAME", "NODE"))
    for a in assets:
        notes = []
        if a.baremetal:
            notes.append("bare metal")
        if a.retired_at is not None:
            notes.append(f"retired: {a.retire_reason}")
        table.add_row(a.name, a.kind, a.role or a.fabric or a.protocol or "", a.model,
                      _hardware(a), f"{a.rack}{'/' + str(a.position) if a.position else ''}",
                      a.node_id or "", ", ".join(notes))
    console.print(table)


def _hardware(a: AssetOut) -> str:
    if a.kind == "server":
        parts = [a.accelerators, f"{a.cpus} CPUs" if a.cpus else "",
                 f"{a.memory_gib} GiB" if a.memory_gib else ""]
        return ", ".join(p for p in parts if p)
    if a.kind == "switch":
        return f"{a.tier or ''} {a.ports} ports".strip()
    return f"{a.capacity_gib / 1024:g} TiB" if a.capacity_gib else ""


@fleet_app.command("show")
def show(name: Annotated[str, typer.Argument(help="The asset's name.")],
         as_json: JsonFlag = False) -> None:
    """One asset: every field, its cables and its place in the fabric."""
    with client() as api:
        asset = api.get_asset(name)
    if as_json:
        print_json(asset)
        return
    print_asset(asset)


def print_asset(a: AssetOut) -> None:
    def line(label: str, value: Any) -> None:
        if value not in (None, "", [], {}, 0):
            console.print(Text(f"{label:<13}", style="bold") + Text(str(value)))

    line("name", a.name)
    line("kind", a.kind)
    line("role", a.role)
    line("vendor", a.vendor)
    line("model", a.model)
    line("serial", a.serial)
    line("hostname", a.hostname)
    line("rack", f"{a.rack}{' U' + str(a.position) if a.position else ''}")
    line("accelerators", a.accelerators)
    line("cpus", a.cpus)
    line("memory", f"{a.memory_gib} GiB" if a.memory_gib else "")
    line("disks", ", ".join(a.disks))
    line("bmc", a.bmc_address)
    line("bare metal", "yes" if a.baremetal else "")
    line("fabric", a.fabric)
    line("tier", a.tier)
    line("ports", a.ports)
    line("links", ", ".join(f"{link.port}:{link.peer}" for link in a.links))
    line("capacity", f"{a.capacity_gib / 1024:g} TiB" if a.capacity_gib else "")
    line("protocol", a.protocol)
    line("purchased", a.purchase_date)
    line("cost", f"{a.purchase_cost} {a.currency} over {a.depreciation_months} months")
    line("power", f"{a.power_watts} W" if a.power_watts else "")
    line("opex", f"{a.opex_month} {a.currency} a month" if a.opex_month != "0" else "")
    line("node", a.node_id)
    line("topology", ", ".join(f"{k}={v}" for k, v in sorted(a.topology.items())))
    if a.retired_at is not None:
        line("retired", f"{a.retired_at:%Y-%m-%d}: {a.retire_reason}")


@fleet_app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="The asset's name.")],
    changes: Annotated[list[str], typer.Argument(
        help="FIELD=VALUE in the words of an import file, e.g. rack=r2 position=12.")],
    as_json: JsonFlag = False,
) -> None:
    """Change fields of an asset, validated as in an import (nothing changes on a problem)."""
    values: dict[str, Any] = {}
    for change in changes:
        field, sep, value = change.partition("=")
        if not sep or not field.strip():
            raise InputError(f"{change!r}: write FIELD=VALUE, e.g. rack=r2")
        values[field.strip()] = value.strip()
    with client() as api:
        asset = api.update_asset(name, values)
    if as_json:
        print_json(asset)
        return
    console.print(f"{asset.name} updated: {', '.join(sorted(values))}", markup=False)


@fleet_app.command("retire")
def retire(
    name: Annotated[str, typer.Argument(help="The asset's name.")],
    reason: Annotated[str, typer.Option(help="Why (sold, scrapped, ...): kept on record.")],
    as_json: JsonFlag = False,
) -> None:
    """Out of the fleet for good: kept on record, gone from the topology and the report."""
    with client() as api:
        asset = api.retire_asset(name, reason)
    if as_json:
        print_json(asset)
        return
    console.print(f"{asset.name} retired: {asset.retire_reason}", markup=False)


@fleet_app.command("bmc-login")
def bmc_login(
    name: Annotated[str, typer.Argument(help="The server's name.")],
    user: Annotated[str, typer.Option(help="The BMC user name.")],
) -> None:
    """Store the BMC login the bare-metal controller uses for this server's Redfish. The
    password is read from $GPUCLOUD_BMC_PASSWORD or asked for (never a flag: ps would show
    it); it is never shown or logged again."""
    password = os.environ.get(BMC_PASSWORD_ENV) or typer.prompt("BMC password",
                                                                hide_input=True)
    with client() as api:
        asset = api.set_bmc_credentials(name, user, password)
    console.print(f"{asset.name}: BMC login stored for {user}", markup=False)


REPORT_COLUMNS = ("asset", "node_id", "gpus", "accelerator", "cost_per_day",
                  "depreciation_per_day", "power_per_day", "opex_per_day", "revenue_per_day",
                  "margin_per_day", "cost_per_gpu_hour", "revenue_per_gpu_hour")


def report_csv(report: FleetReportOut) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*REPORT_COLUMNS, "currency"])
    for row in report.rows:
        data = row.model_dump()
        writer.writerow([*("" if data[c] is None else data[c] for c in REPORT_COLUMNS),
                         report.currency])
    return out.getvalue()


@fleet_app.command("report")
def report(
    days: Annotated[int, typer.Option(help="Revenue over the last DAYS days.")] = 30,
    power_price: Annotated[str, typer.Option(help="Price of a kWh, e.g. 0.15.")] = "0.15",
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Per asset: cost per day (depreciation, power, operating cost) and per GPU-hour, against
    revenue per day."""
    if as_csv and as_json:
        raise InputError("--csv and --json cannot be combined; choose one")
    with client() as api:
        found = api.fleet_report(days, power_price)
    if as_json:
        print_json(found)
        return
    if as_csv:
        sys.stdout.write(report_csv(found))
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ASSET", "GPUS", "COST/DAY", "REVENUE/DAY", "MARGIN/DAY", "COST/GPU-H",
                   "REVENUE/GPU-H"):
        table.add_column(column, justify="left" if column == "ASSET" else "right",
                         no_wrap=True)
    for r in found.rows:
        table.add_row(r.asset, str(r.gpus), r.cost_per_day, r.revenue_per_day, r.margin_per_day,
                      r.cost_per_gpu_hour or "-", r.revenue_per_gpu_hour or "-")
    console.print(f"{found.currency}, revenue over {found.days} days, power at "
                  f"{found.power_price_kwh} a kWh", markup=False)
    console.print(table)
    console.print(f"total: cost {found.total_cost_per_day} a day, revenue "
                  f"{found.total_revenue_per_day} a day", markup=False)
