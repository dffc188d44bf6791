"""'gpucloud volume ...' (persistent directories) and 'gpucloud dataset ...' (versioned,
read-only data with a per-node cache)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from gpucloud.cli.common import JsonFlag, client
from gpucloud.cli.output import console, err_console, print_json, timestamp
from gpucloud.schemas.workspaces import DatasetVersionOut, NodeCacheOut, VolumeOut

volume_app = typer.Typer(help="Persistent volumes: create, grow, attach (--volume NAME:/path), "
                         "delete.", no_args_is_help=True)
dataset_app = typer.Typer(help="Versioned datasets: push a directory, mount name:version "
                          "read-only.", no_args_is_help=True)

RefArgument = Annotated[str, typer.Argument(help="Name or id.")]


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _money(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency}/h"


# --- volumes ----------------------------------------------------------------------------------


@volume_app.command("create")
def volume_create(
    name: Annotated[str, typer.Argument(help="Lower-case letters, digits and '-'.")],
    size: Annotated[str, typer.Option("--size", help="e.g. 10G or 1T (whole GiB).")],
    as_json: JsonFlag = False,
) -> None:
    """A new empty volume, billed per GiB-hour of its size until deleted."""
    with client() as api:
        volume = api.create_volume(name, size)
    _show_volume(volume, as_json)


@volume_app.command("grow")
def volume_grow(
    ref: RefArgument,
    size: Annotated[str, typer.Option("--size", help="The new, larger size, e.g. 20G.")],
    as_json: JsonFlag = False,
) -> None:
    """Make a volume larger (never smaller)."""
    with client() as api:
        volume = api.grow_volume(ref, size)
    _show_volume(volume, as_json)


@volume_app.command("list")
def volume_list(
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted ones.")] = False,
    as_json: JsonFlag = False,
) -> None:
    with client() as api:
        volumes = api.list_volumes(deleted)
    if as_json:
        print_json(volumes)
        return
    print_volumes(volumes)


def print_volumes(volumes: Sequence[VolumeOut]) -> None:
    if not volumes:
        console.print("no volumes; create one with 'gpucloud volume create NAME --size 10G'",
                      markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "ID", "STATE", "SIZE", "USED", "PRICE", "CREATED"):
        table.add_column(column, no_wrap=True)
    for v in volumes:
        table.add_row(v.name, v.id, v.state.value, f"{v.size_gib} GiB", _bytes(v.used_bytes),
                      _money(v.price_per_hour_minor, v.currency), timestamp(v.created_at))
    console.print(table)


@volume_app.command("show")
def volume_show(ref: RefArgument, as_json: JsonFlag = False) -> None:
    with client() as api:
        volume = api.get_volume(ref)
    _show_volume(volume, as_json)


def _show_volume(v: VolumeOut, as_json: bool) -> None:
    if as_json:
        print_json(v)
        return
    used = _bytes(v.used_bytes) + (f" (measured {timestamp(v.measured_at)})"
                                   if v.measured_at else " (not measured yet)")
    lines = [
        ("name", f"{v.name} ({v.id})"), ("state", v.state.value), ("size", f"{v.size_gib} GiB"),
        ("used", used), ("price", _money(v.price_per_hour_minor, v.currency)),
        ("in a workload", f"${v.env}"),
        ("attached to", ", ".join(v.attached_to) or "nothing"),
        ("created", f"{timestamp(v.created_at)} by {v.created_by}"),
    ]
    for label, value in lines:
        console.print(f"{label + ':':15}{value}", markup=False)
    for event in v.events:
        console.print(f"  {timestamp(event.at)}  {event.kind}  {event.message}", markup=False)


@volume_app.command("delete")
def volume_delete(ref: RefArgument, as_json: JsonFlag = False) -> None:
    """Delete a detached volume and its data (billing stops now)."""
    with client() as api:
        volume = api.delete_volume(ref)
    if as_json:
        print_json(volume)
        return
    console.print(f"deleted volume {volume.name} ({volume.id}); its data is being removed",
                  markup=False)


@volume_app.command("quota")
def volume_quota(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Operators: of this tenant.")]
    = None,
    set_gib: Annotated[int | None, typer.Option(
        "--set", help="Operators: the tenant's quota in GiB.")] = None,
    default: Annotated[bool, typer.Option(
        "--default", help="Operators: back to the platform's default.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The GiB of volumes a tenant may hold at once, and what it holds."""
    with client() as api:
        if set_gib is not None or default:
            quota = api.set_volume_quota(None if default else set_gib, tenant)
        else:
            quota = api.volume_quota(tenant)
    if as_json:
        print_json(quota)
        return
    source = "set for this tenant" if quota.own else "the platform's default"
    console.print(f"{quota.used_gib} GiB of {quota.quota_gib} GiB held ({source})",
                  markup=False)


# --- datasets ---------------------------------------------------------------------------------


@dataset_app.command("push")
def dataset_push(
    name: Annotated[str, typer.Argument(help="The dataset (created on the first push).")],
    directory: Annotated[str, typer.Argument(help="The directory to upload.")],
    as_json: JsonFlag = False,
) -> None:
    """Upload a directory as a version; identical content gives the existing version."""
    with client() as api, Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), console=err_console, transient=True,
            disable=as_json) as bar:
        task = bar.add_task(f"pushing {name}", total=None)

        def advance(sent: int, total: int) -> None:
            bar.update(task, completed=sent, total=total)

        version = api.push_dataset(name, directory, progress=advance)
    if as_json:
        print_json(version)
        return
    verb = "new version" if version.created else "unchanged: existing version"
    console.print(f"{name}: {verb} {version.version} (#{version.number}, {version.files} "
                  f"files, {_bytes(version.size_bytes)}); mount it as {name}:{version.version}",
                  markup=False)


@dataset_app.command("versions")
def dataset_versions(name: RefArgument, as_json: JsonFlag = False) -> None:
    with client() as api:
        versions = api.dataset_versions(name)
    if as_json:
        print_json(versions)
        return
    print_versions(versions)


def print_versions(versions: Sequence[DatasetVersionOut]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("#", "VERSION", "FILES", "SIZE", "PUSHED"):
        table.add_column(column, no_wrap=True)
    for v in versions:
        table.add_row(str(v.number), v.version, str(v.files), _bytes(v.size_bytes),
                      f"{timestamp(v.created_at)} by {v.pushed_by}")
    console.print(table)


@dataset_app.command("list")
def dataset_list(as_json: JsonFlag = False) -> None:
    with client() as api:
        datasets = api.list_datasets()
    if as_json:
        print_json(datasets)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "ID", "VERSIONS", "LATEST", "SIZE"):
        table.add_column(column, no_wrap=True)
    for d in datasets:
        latest = d.latest
        table.add_row(d.name, d.id, str(d.versions), latest.version if latest else "-",
                      _bytes(latest.size_bytes) if latest else "-")
    console.print(table)


@dataset_app.command("rm")
def dataset_rm(
    ref: Annotated[str, typer.Argument(help="NAME (every version) or NAME:VERSION.")],
) -> None:
    """Remove a dataset or one version; refused while a job that has not ended mounts it."""
    name, _, version = ref.partition(":")
    with client() as api:
        api.remove_dataset(name, version or None)
    console.print(f"removed {ref}", markup=False)


@dataset_app.command("cache")
def dataset_cache(as_json: JsonFlag = False) -> None:
    """Each node's dataset cache: use, hits, misses and hit rate, and your versions in it."""
    with client() as api:
        nodes = api.dataset_cache()
    if as_json:
        print_json(nodes)
        return
    print_cache(nodes)


def print_cache(nodes: Sequence[NodeCacheOut]) -> None:
    if not nodes:
        console.print("no node has cached a dataset yet", markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NODE", "USED", "CAPACITY", "HITS", "MISSES", "HIT RATE", "EVICTED",
                   "YOUR VERSIONS"):
        table.add_column(column, no_wrap=True)
    for n in nodes:
        rate = "-" if n.hit_rate is None else f"{n.hit_rate:.0%}"
        mine = ", ".join(f"{e.dataset}:{e.version}" for e in n.entries) or "-"
        table.add_row(n.node_id, _bytes(n.used_bytes), _bytes(n.capacity_bytes), str(n.hits),
                      str(n.misses), rate, str(n.evictions), mine)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(volume_app, name="volume")
    app.add_typer(dataset_app, name="dataset")
