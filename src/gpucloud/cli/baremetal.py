"""``gpucloud baremetal ...``: lease whole servers, power them, reimage and release them;
operators register boot images and return servers from maintenance."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.output import console, print_json
from gpucloud.schemas.fleet import BareMetalLeaseOut

baremetal_app = typer.Typer(help="Servers leased whole: list, lease, power, reimage, release.",
                            no_args_is_help=True)
image_app = typer.Typer(help="Images a bare-metal server boots (operators add them).",
                        no_args_is_help=True)
baremetal_app.add_typer(image_app, name="image")
LeaseRef = Annotated[str, typer.Argument(help="The lease id (or the server's name).")]


@baremetal_app.command("list")
def list_(
    every: Annotated[bool, typer.Option("--all", help="Every server in any state "
                                                      "(operators).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Servers free to lease now: hardware and price per hour."""
    with client() as api:
        servers = api.list_baremetal(every)
    if as_json:
        print_json(servers)
        return
    if not servers:
        console.print("no bare-metal server is free now", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["SERVER", "MODEL", "ACCELERATORS", "CPUS", "MEMORY", "DISKS", "PRICE/HOUR"]
    if every:
        columns += ["STATE", "TENANT", "REASON"]
    for column in columns:
        table.add_column(column, no_wrap=column in ("SERVER", "PRICE/HOUR"))
    for s in servers:
        price = f"{s.price_per_hour} {s.currency}" if s.price_per_hour else "unpriced"
        row = [s.name, s.model, s.accelerators or "-", str(s.cpus), f"{s.memory_gib} GiB",
               ", ".join(s.disks), price]
        if every:
            row += [s.state, s.tenant_id or "", s.reason or ""]
        table.add_row(*row)
    console.print(table)


@baremetal_app.command("lease")
def lease(
    model: Annotated[str | None, typer.Option(help="Any free server of this model.")] = None,
    server: Annotated[str | None, typer.Option(help="This server, by name.")] = None,
    image: Annotated[str | None, typer.Option(help="The OS image to boot (default: the "
                                                   "only one there is).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Lease a whole server; it is provisioned (image booted from virtual media) and billed
    per server-hour from then until you release it."""
    with client() as api:
        found = api.lease_baremetal(model=model, server=server, image=image)
    if as_json:
        print_json(found)
        return
    console.print(f"lease {found.id}: {found.server} ({found.model}) {found.state}, image "
                  f"{found.image}, {found.price_per_hour} {found.currency} per hour once leased",
                  markup=False)
    console.print(f"  follow it with: gpucloud baremetal show {found.id}", markup=False)


@baremetal_app.command("leases")
def leases(
    ended: Annotated[bool, typer.Option("--ended", help="Include ended leases.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Your bare-metal leases (all tenants' for operators)."""
    with client() as api:
        found = api.list_baremetal_leases(ended)
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no bare-metal leases: 'gpucloud baremetal list' shows free servers",
                      markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("LEASE", "SERVER", "MODEL", "STATE", "IMAGE", "CHARGED", "REASON"):
        table.add_column(column, no_wrap=column in ("LEASE", "SERVER"))
    for item in found:
        table.add_row(item.id, item.server, item.model, item.state, item.image,
                      f"{item.charged} {item.currency}", item.reason)
    console.print(table)


@baremetal_app.command("show")
def show(ref: LeaseRef, as_json: JsonFlag = False) -> None:
    """One lease: its state, image, power (as the BMC says now) and what it has cost."""
    with client() as api:
        found = api.get_baremetal_lease(ref)
    if as_json:
        print_json(found)
        return
    print_lease(found)


def print_lease(lease: BareMetalLeaseOut) -> None:
    def line(label: str, value: object) -> None:
        if value not in (None, ""):
            console.print(Text(f"{label:<10}", style="bold") + Text(str(value)))

    line("lease", lease.id)
    hardware = f", {lease.accelerators}" if lease.accelerators else ""
    line("server", f"{lease.server} ({lease.model}{hardware})")
    line("state", lease.state)
    line("power", lease.power)
    line("image", lease.image)
    line("price", f"{lease.price_per_hour} {lease.currency} per hour"
         if lease.price_per_hour else "")
    line("charged", f"{lease.charged} {lease.currency}")
    line("leased", lease.leased_at)
    line("ended", lease.ended_at)
    line("reason", lease.reason)


@baremetal_app.command("power")
def power(
    action: Annotated[str, typer.Argument(help="on, off or reset.")],
    ref: LeaseRef,
    as_json: JsonFlag = False,
) -> None:
    """Power the leased server on, off (forced) or reset it, through its BMC."""
    with client() as api:
        found = api.power_baremetal(ref, action)
    if as_json:
        print_json(found)
        return
    console.print(f"{found.server}: power {action} sent (power now: {found.power})",
                  markup=False)


@baremetal_app.command("reimage")
def reimage(
    ref: LeaseRef,
    image: Annotated[str | None, typer.Option(help="Another OS image (default: the "
                                                   "lease's).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Boot the leased server from an image again; the lease and its billing go on."""
    with client() as api:
        found = api.reimage_baremetal(ref, image)
    if as_json:
        print_json(found)
        return
    console.print(f"{found.server}: {found.state} with {found.image}", markup=False)


@baremetal_app.command("release")
def release(ref: LeaseRef, as_json: JsonFlag = False) -> None:
    """Give the server back: billing stops now; it is powered off and wiped."""
    with client() as api:
        found = api.release_baremetal(ref)
    if as_json:
        print_json(found)
        return
    console.print(f"lease {found.id} ended: {found.server} released; charged "
                  f"{found.charged} {found.currency}", markup=False)


@baremetal_app.command("return")
def return_(
    server: Annotated[str, typer.Argument(help="The server's name.")],
    as_json: JsonFlag = False,
) -> None:
    """Operators: take a server out of maintenance; it is wiped, then available."""
    with client() as api:
        found = api.return_baremetal(server)
    if as_json:
        print_json(found)
        return
    console.print(f"{found.name}: {found.state}", markup=False)


@baremetal_app.command("maintenance")
def maintenance(
    server: Annotated[str, typer.Argument(help="The server's name.")],
    reason: Annotated[str, typer.Option(help="Why: shown to operators.")],
    as_json: JsonFlag = False,
) -> None:
    """Operators: take a server out of service now (a tenant holding it stops paying)."""
    with client() as api:
        found = api.maintain_baremetal(server, reason)
    if as_json:
        print_json(found)
        return
    console.print(f"{found.name}: {found.state}: {found.reason}", markup=False)
    console.print(f"  return it with: gpucloud baremetal return {found.name}", markup=False)


@image_app.command("add")
def image_add(
    name: Annotated[str, typer.Argument(help="The image's name, e.g. ubuntu-24.04.")],
    url: Annotated[str, typer.Argument(help="Its http(s) URL (the BMC fetches it).")],
    wipe: Annotated[bool, typer.Option("--wipe", help="The wipe image: erases the disks "
                                                      "between tenants, then powers off.")
                    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Register (or change) a boot image."""
    with client() as api:
        found = api.add_boot_image(name, url, wipe)
    if as_json:
        print_json(found)
        return
    console.print(f"image {found.name} ({found.purpose}): {found.url}", markup=False)


@image_app.command("list")
def image_list(as_json: JsonFlag = False) -> None:
    """Boot images: OS images leases boot, and the wipe image."""
    with client() as api:
        found = api.list_boot_images()
    if as_json:
        print_json(found)
        return
    for image in found:
        console.print(f"{image.name:<24} {image.purpose:<5} {image.url}", markup=False)
    if not found:
        console.print("no images: add one with 'gpucloud baremetal image add NAME URL'",
                      markup=False)
