"""The asset register in the database: import (an idempotent upsert by name), update,
retire, and what is derived from it for the rest of the platform: which engine node is which
server, and every node's place in the fabric (the scheduler's topology labels)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gpucloud.billing.money import Money
from gpucloud.core.errors import Conflict, NotFound
from gpucloud.core.fleet import (
    AssetKind,
    AssetSpec,
    Disk,
    InvalidAssets,
    Link,
    Record,
    ServerPlace,
    SwitchPlace,
    check_links,
    match_nodes,
    topology_labels,
    validate_records,
)
from gpucloud.core.ids import IdFactory
from gpucloud.store.models import Node
from gpucloud.store.models_fleet import Asset, AssetLink, BareMetalServer
from gpucloud.store.prices import load_versions
from gpucloud.store.transitions import record_event

# Columns of an asset that come from its spec, written by import and update alike.
_COLUMNS = ("kind", "role", "vendor", "model", "serial", "hostname", "rack", "position",
            "accelerator_model", "accelerator_count", "cpus", "memory_gib", "bmc_address",
            "nvlink_island", "baremetal", "fabric", "tier", "ports", "capacity_gib",
            "protocol", "purchase_date", "purchase_cost_minor", "depreciation_months",
            "power_watts", "opex_month_minor")


@dataclass(frozen=True)
class ImportResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]


def currency(session: Session) -> str:
    versions = load_versions(session)
    return versions[-1].currency if versions else "CNY"


def import_assets(session: Session, ids: IdFactory, records: Sequence[Record], who: str,
                  now: datetime) -> ImportResult:
    """Create or update every asset of the records, by name; all or nothing. Importing the
    same file twice changes nothing the second time."""
    specs = validate_records(records, currency(session))
    existing = {a.name: a for a in session.scalars(
        select(Asset).where(Asset.name.in_([s.name for s in specs])))}
    check_links(specs, set(session.scalars(select(Asset.name))))
    _check_serials(session, specs)
    result = ImportResult([], [], [])
    names = asset_names(session)
    for spec in specs:
        row = existing.get(spec.name)
        if row is None:
            row = Asset(id=ids.new("ast", now), name=spec.name, created_at=now, updated_at=now,
                        retire_reason="")
            session.add(row)
            result.created.append(spec.name)
        elif row.kind != spec.kind:
            raise InvalidAssets([f"line {spec.line}: {spec.name}: it is registered as a "
                                 f"{row.kind.value}, not a {spec.kind.value}"])
        elif spec_of(session, row, names).comparable() == spec.comparable():
            result.unchanged.append(spec.name)
            continue
        else:
            result.updated.append(spec.name)
        _write(row, spec, now)
    session.flush()
    by_name = {a.name: a for a in session.scalars(select(Asset))}
    for spec in specs:
        if spec.name in result.unchanged:
            continue
        _write_links(session, by_name[spec.name], spec.links, by_name)
    if result.created or result.updated:
        record_event(session, at=now, object_kind="asset", object_id="register",
                     kind="asset.import", tenant_id=None,
                     message=f"{len(result.created)} created, {len(result.updated)} updated "
                             f"by {who}")
    return result


def _check_serials(session: Session, specs: Sequence[AssetSpec]) -> None:
    serials = {s.serial: s for s in specs if s.serial}
    problems = [
        f"line {serials[serial].line}: {serials[serial].name}: serial {serial!r} is already "
        f"registered to {name}"
        for name, serial in session.execute(
            select(Asset.name, Asset.serial).where(Asset.serial.in_(list(serials))))
        if serial is not None and name != serials[serial].name
    ]
    if problems:
        raise InvalidAssets(problems)


def _write(row: Asset, spec: AssetSpec, now: datetime) -> None:
    for column in _COLUMNS:
        setattr(row, column, getattr(spec, column))
    row.disks = [asdict(d) for d in spec.disks]
    row.updated_at = now


def _write_links(session: Session, row: Asset, links: Iterable[Link],
                 by_name: Mapping[str, Asset]) -> None:
    session.execute(delete(AssetLink).where(AssetLink.switch_id == row.id))
    for link in links:
        session.add(AssetLink(switch_id=row.id, port=link.port, peer_id=by_name[link.peer].id))


def asset_names(session: Session) -> dict[str, str]:
    """Asset id -> name, for every asset."""
    return {asset_id: name for asset_id, name in session.execute(select(Asset.id, Asset.name))}


def spec_of(session: Session, row: Asset, names: Mapping[str, str] | None = None) -> AssetSpec:
    """The stored asset as a spec (what an update edits and an import compares)."""
    names = asset_names(session) if names is None else names
    links = tuple(Link(link.port, names[link.peer_id]) for link in session.scalars(
        select(AssetLink).where(AssetLink.switch_id == row.id).order_by(AssetLink.port)))
    values: dict[str, Any] = {column: getattr(row, column) for column in _COLUMNS}
    return AssetSpec(name=row.name, links=links,
                     disks=tuple(Disk(**d) for d in row.disks or []), **values)


def find_asset(session: Session, name_or_id: str) -> Asset:
    row = session.scalar(select(Asset).where(
        (Asset.name == name_or_id.lower()) | (Asset.id == name_or_id)))
    if row is None:
        raise NotFound("asset", name_or_id)
    return row


def update_asset(session: Session, row: Asset, changes: Mapping[str, Any], who: str,
                 now: datetime) -> None:
    """Change some fields, validated as an import of the whole asset would be."""
    if "name" in changes or "kind" in changes:
        raise InvalidAssets([f"{row.name}: name and kind cannot change; retire the asset "
                             "and import it anew"])
    money = currency(session)
    current = _as_record(spec_of(session, row), money)
    merged = Record(0, row.kind.value, {**current, **changes})
    spec = validate_records([merged], money)[0]
    check_links([spec], set(session.scalars(select(Asset.name))))
    _check_serials(session, [spec])
    _write(row, spec, now)
    by_name = {a.name: a for a in session.scalars(select(Asset))}
    _write_links(session, row, spec.links, by_name)
    record_event(session, at=now, object_kind="asset", object_id=row.id, kind="asset.update",
                 tenant_id=None, message=f"{', '.join(sorted(changes))} changed by {who}")


def _as_record(spec: AssetSpec, money: str) -> dict[str, Any]:
    """A spec back in the words of an import file, so that it validates the same way."""
    values: dict[str, Any] = {
        "name": spec.name, "vendor": spec.vendor, "model": spec.model, "serial": spec.serial,
        "rack": spec.rack, "position": spec.position, "purchase_date": spec.purchase_date,
        "depreciation_months": spec.depreciation_months, "power_watts": spec.power_watts,
        "links": [{"port": link.port, "to": link.peer} for link in spec.links] or None,
        "disks": [str(d) for d in spec.disks] or None,
    }
    if spec.purchase_cost_minor:
        values["cost"] = str(Money(spec.purchase_cost_minor, money).decimal)
    if spec.opex_month_minor:
        values["opex_month"] = str(Money(spec.opex_month_minor, money).decimal)
    if spec.kind is AssetKind.SERVER:
        values.update(role=spec.role.value if spec.role else None, hostname=spec.hostname,
                      cpus=spec.cpus, memory_gib=spec.memory_gib, bmc=spec.bmc_address,
                      nvlink_island=spec.nvlink_island, baremetal=spec.baremetal)
        if spec.accelerator_count:
            values["accelerators"] = f"{spec.accelerator_count}x{spec.accelerator_model}"
    elif spec.kind is AssetKind.SWITCH:
        values.update(fabric=spec.fabric.value if spec.fabric else None,
                      tier=spec.tier.value if spec.tier else None, ports=spec.ports or None)
    else:
        values.update(protocol=spec.protocol, capacity_tib=str(spec.capacity_gib / 1024))
    return values


def retire_asset(session: Session, row: Asset, reason: str, who: str, now: datetime) -> None:
    """Out of the fleet for good (sold, scrapped): kept for the record, no longer a place in
    the topology or a cost in the report. A leased server cannot be retired."""
    held = session.get(BareMetalServer, row.id)
    if held is not None and held.tenant_id is not None:
        raise Conflict(f"{row.name} is leased as bare metal; it can be retired once released")
    if row.retired_at is not None:
        return
    row.retired_at, row.retire_reason, row.updated_at = now, reason, now
    session.execute(delete(AssetLink).where(
        (AssetLink.switch_id == row.id) | (AssetLink.peer_id == row.id)))
    record_event(session, at=now, object_kind="asset", object_id=row.id, kind="asset.retire",
                 tenant_id=None, message=f"{reason} (by {who})")


# -- derived: which node is which server, and where it sits ------------------------------------


@dataclass(frozen=True)
class FleetPlaces:
    """Engine node id -> server asset name, and node id -> its topology labels."""

    server_of: dict[str, str]
    labels: dict[str, dict[str, str]]

    def node_of(self, server: str) -> str | None:
        return next((n for n, s in self.server_of.items() if s == server), None)


def fleet_places(session: Session, nodes: Mapping[str, Mapping[str, str]] | None = None
                 ) -> FleetPlaces:
    """Derived at every read from the register and the engine's nodes (``nodes``: id ->
    labels; default: every node in the database): there is no second copy to drift."""
    if nodes is None:
        nodes = {n.id: {str(k): str(v) for k, v in (n.labels or {}).items()}
                 for n in session.scalars(select(Node))}
    live = list(session.scalars(select(Asset).where(Asset.retired_at.is_(None))))
    if not live:
        return FleetPlaces({}, {})
    names = {a.id: a.name for a in live}
    peers: dict[str, list[str]] = {a.id: [] for a in live if a.kind is AssetKind.SWITCH}
    for link in session.scalars(select(AssetLink).order_by(AssetLink.switch_id, AssetLink.port)):
        if link.switch_id in peers and link.peer_id in names:
            peers[link.switch_id].append(names[link.peer_id])
    servers = [ServerPlace(a.name, a.hostname, a.serial, a.rack, a.nvlink_island)
               for a in live if a.kind is AssetKind.SERVER]
    switches = [SwitchPlace(a.name, a.tier, tuple(peers[a.id]))
                for a in live if a.kind is AssetKind.SWITCH and a.tier is not None]
    server_of = match_nodes(nodes, servers)
    by_server = topology_labels(servers, switches)
    return FleetPlaces(server_of, {node: by_server[name] for node, name in server_of.items()})


def with_register_topology(labels: dict[str, str], places: FleetPlaces, node_id: str
                           ) -> dict[str, str]:
    """A node's labels with its place from the register over what the engine said."""
    return {**labels, **places.labels.get(node_id, {})}

