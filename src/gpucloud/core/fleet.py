"""The asset register's rules: what an asset is, how an import record is validated, and how
engine nodes and the fabric's topology are derived from it. Pure: no database, no I/O.

A record is one asset as typed by an operator (a YAML mapping or a CSV row) with the line it
starts on, so that every problem names its line. Validation collects every problem of a file
before refusing it, and refuses the whole file: an import changes all or nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from gpucloud.billing.money import parse_amount
from gpucloud.core.catalog import find_model
from gpucloud.core.errors import InvalidRequest


class AssetKind(StrEnum):
    SERVER = "server"
    SWITCH = "switch"
    STORAGE = "storage"


class ServerRole(StrEnum):
    AI = "ai"  # accelerator (GPU) servers
    STORAGE = "storage"
    EDGE = "edge"
    CPU = "cpu"


class Fabric(StrEnum):
    ETHERNET = "ethernet"
    INFINIBAND = "infiniband"


class SwitchTier(StrEnum):
    LEAF = "leaf"
    SPINE = "spine"


ROLE_ALIASES = {"gpu": ServerRole.AI}
PROTOCOLS = ("nfs", "s3", "lustre", "gpfs", "ceph", "iscsi", "nvmeof", "weka", "smb")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ACCELERATORS = re.compile(r"^\s*(\d+)\s*[x*]\s*(\S+)\s*$", re.IGNORECASE)
DISK = re.compile(r"^\s*(?:(\d+)\s*[x*]\s*)?(\d+(?:\.\d+)?)\s*([GT])i?B?\s*(\w+)?\s*$",
                  re.IGNORECASE)
DEFAULT_DEPRECIATION_MONTHS = 60


@dataclass(frozen=True)
class Disk:
    count: int
    size_gib: int
    type: str  # nvme, ssd, hdd

    def __str__(self) -> str:
        return f"{self.count}x{self.size_gib}G {self.type}"


@dataclass(frozen=True)
class Link:
    port: int
    peer: str  # the name of a server, switch or storage system


@dataclass(frozen=True)
class Record:
    line: int  # where the asset starts in the file (0: not from a file)
    kind: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class AssetSpec:
    """One validated asset. Fields that do not apply to its kind keep their defaults."""

    kind: AssetKind
    name: str
    line: int = 0
    role: ServerRole | None = None
    vendor: str = ""
    model: str = ""
    serial: str | None = None
    hostname: str | None = None
    rack: str = ""
    position: int | None = None
    accelerator_model: str | None = None
    accelerator_count: int = 0
    cpus: int = 0
    memory_gib: int = 0
    disks: tuple[Disk, ...] = ()
    bmc_address: str = ""
    nvlink_island: str = ""
    baremetal: bool = False
    fabric: Fabric | None = None
    tier: SwitchTier | None = None
    ports: int = 0
    links: tuple[Link, ...] = ()
    capacity_gib: int = 0
    protocol: str = ""
    purchase_date: date | None = None
    purchase_cost_minor: int = 0
    depreciation_months: int = DEFAULT_DEPRECIATION_MONTHS
    power_watts: int = 0
    opex_month_minor: int = 0

    def comparable(self) -> tuple[Any, ...]:
        """Everything stored, without where it was read: equal means an import changes nothing."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "line")


FIELDS = {f.name for f in fields(AssetSpec)} - {"line", "kind", "accelerator_model",
                                                 "accelerator_count", "capacity_gib",
                                                 "purchase_cost_minor", "opex_month_minor",
                                                 "bmc_address"}
# How a record spells the fields (YAML keys, CSV headers), beyond the fields' own names.
INPUT_KEYS = FIELDS | {"accelerators", "capacity_tib", "cost", "opex_month", "bmc",
                       "purchase_cost", "depreciation"}
KIND_KEYS = {
    AssetKind.SERVER: {"role", "vendor", "model", "serial", "hostname", "rack", "position",
                       "accelerators", "cpus", "memory_gib", "disks", "bmc", "nvlink_island",
                       "baremetal", "links"},
    AssetKind.SWITCH: {"vendor", "model", "serial", "rack", "position", "fabric", "tier",
                       "ports", "links"},
    AssetKind.STORAGE: {"vendor", "model", "serial", "rack", "position", "capacity_tib",
                        "protocol", "disks", "links"},
}
COMMON_KEYS = {"name", "kind", "purchase_date", "cost", "purchase_cost", "depreciation_months",
               "depreciation", "power_watts", "opex_month"}


class InvalidAssets(InvalidRequest):
    """Every problem of an import or update, one per line of the message."""

    def __init__(self, problems: Sequence[str]) -> None:
        shown = list(problems[:50])
        more = f"\n... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s), nothing was changed:\n"
                         + "\n".join(shown) + more, "assets")
        self.problems = list(problems)


@dataclass
class _Reader:
    """Reads one record's values, noting problems instead of stopping at the first."""

    record: Record
    currency: str
    problems: list[str] = field(default_factory=list)

    def where(self, key: str) -> str:
        at = f"line {self.record.line}: " if self.record.line else ""
        name = self.record.values.get("name")
        return f"{at}{name or self.record.kind}: {key}"

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"{self.where(key)}: {message}")

    def raw(self, key: str) -> Any:
        value = self.record.values.get(key)
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    def text(self, key: str, limit: int = 64) -> str:
        value = self.raw(key)
        if value is None:
            return ""
        text = str(value).strip()
        if len(text) > limit:
            self.fail(key, f"at most {limit} characters")
        return text

    def integer(self, key: str, low: int = 0, high: int = 10**9) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        try:
            number = int(str(value).strip())
        except ValueError:
            self.fail(key, f"{value!r} is not a whole number")
            return None
        if not low <= number <= high:
            self.fail(key, f"must be between {low} and {high}, not {number}")
            return None
        return number

    def money(self, *keys: str) -> int:
        key = next((k for k in keys if self.raw(k) is not None), None)
        if key is None:
            return 0
        try:
            amount = parse_amount(self.raw(key), self.currency, key).minor
        except InvalidRequest as err:
            self.fail(key, str(err).removeprefix(f"{key}: "))
            return 0
        if amount < 0:
            self.fail(key, "must not be negative")
        return amount

    def choice(self, key: str, enum: type[StrEnum], aliases: Mapping[str, Any] = {}) -> Any:
        value = self.raw(key)
        if value is None:
            return None
        text = str(value).strip().lower()
        if text in aliases:
            return aliases[text]
        try:
            return enum(text)
        except ValueError:
            allowed = ", ".join([m.value for m in enum] + list(aliases))
            self.fail(key, f"{value!r} is not one of {allowed}")
            return None

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if value is None or isinstance(value, bool):
            return bool(value)
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "y"):
            return True
        if text not in ("false", "no", "0", "n"):
            self.fail(key, f"{value!r} is not true or false")
        return False


def validate_records(records: Iterable[Record], currency: str) -> list[AssetSpec]:
    """Every record as an asset; raises :class:`InvalidAssets` listing every problem."""
    problems: list[str] = []
    specs: list[AssetSpec] = []
    first_line: dict[str, int] = {}
    for record in records:
        reader = _Reader(record, currency)
        spec = _read(reader)
        problems += reader.problems
        if spec is None:
            continue
        if spec.name in first_line:
            problems.append(f"{reader.where('name')}: {spec.name!r} is already defined"
                            + (f" on line {first_line[spec.name]}" if first_line[spec.name]
                               else ""))
            continue
        first_line[spec.name] = record.line
        specs.append(spec)
    if problems:
        raise InvalidAssets(problems)
    return specs


def _read(r: _Reader) -> AssetSpec | None:
    kind = r.choice("kind", AssetKind) if r.raw("kind") is not None else None
    if kind is None:
        try:
            kind = AssetKind(r.record.kind)
        except ValueError:
            r.fail("kind", f"{r.record.kind!r} is not one of server, switch, storage")
            return None
    allowed = KIND_KEYS[kind] | COMMON_KEYS
    for key in r.record.values:
        if key not in allowed and r.raw(key) is not None:
            hint = "" if key in INPUT_KEYS else "; known: " + ", ".join(sorted(allowed))
            r.fail(str(key), f"is not a field of a {kind.value}{hint}")
    name = r.text("name").lower()
    if not name:
        r.fail("name", "is required")
        return None
    if not NAME.match(name):
        r.fail("name", f"{name!r}: use lowercase letters, digits, '.', '_' and '-'")
    common: dict[str, Any] = dict(
        kind=kind, name=name, line=r.record.line, vendor=r.text("vendor"),
        model=r.text("model"), serial=r.text("serial") or None, rack=r.text("rack", 32),
        position=r.integer("position", 1, 64), links=_links(r), disks=_disks(r),
        purchase_date=_date(r), purchase_cost_minor=r.money("cost", "purchase_cost"),
        depreciation_months=r.integer("depreciation_months", 1, 240)
        or r.integer("depreciation", 1, 240) or DEFAULT_DEPRECIATION_MONTHS,
        power_watts=r.integer("power_watts", 0, 200_000) or 0,
        opex_month_minor=r.money("opex_month"),
    )
    if kind is AssetKind.SERVER:
        model, count = _accelerators(r)
        role = r.choice("role", ServerRole, ROLE_ALIASES) or (
            ServerRole.AI if count else ServerRole.CPU)
        if role is ServerRole.AI and not count:
            r.fail("accelerators", "an AI server needs its accelerators, e.g. 8xH100")
        bmc = r.text("bmc", 255)
        if bmc and not bmc.startswith(("http://", "https://")):
            r.fail("bmc", f"{bmc!r}: write the BMC's Redfish URL, e.g. https://10.0.0.21")
        baremetal = r.boolean("baremetal")
        if baremetal and not bmc:
            r.fail("baremetal", "a bare-metal server needs its BMC address (bmc)")
        return AssetSpec(**common, role=role, hostname=r.text("hostname", 128) or None,
                         accelerator_model=model, accelerator_count=count,
                         cpus=r.integer("cpus", 0, 4096) or 0,
                         memory_gib=r.integer("memory_gib", 0, 1 << 24) or 0,
                         bmc_address=bmc, nvlink_island=r.text("nvlink_island"),
                         baremetal=baremetal)
    if kind is AssetKind.SWITCH:
        fabric = r.choice("fabric", Fabric)
        if fabric is None and r.raw("fabric") is None:
            r.fail("fabric", "is required: ethernet or infiniband")
        ports = r.integer("ports", 1, 4096) or 0
        for link in common["links"]:
            if ports and link.port > ports:
                r.fail("links", f"port {link.port} is beyond the switch's {ports} ports")
        return AssetSpec(**common, fabric=fabric, tier=r.choice("tier", SwitchTier) or
                         SwitchTier.LEAF, ports=ports)
    protocol = r.text("protocol").lower()
    if protocol and protocol not in PROTOCOLS:
        r.fail("protocol", f"{protocol!r} is not one of " + ", ".join(PROTOCOLS))
    return AssetSpec(**common, capacity_gib=_capacity(r), protocol=protocol)


def _accelerators(r: _Reader) -> tuple[str | None, int]:
    value = r.raw("accelerators")
    if value is None:
        return None, 0
    if isinstance(value, Mapping):
        text = f"{value.get('count', 1)}x{value.get('model', '')}"
    else:
        text = str(value)
    match = ACCELERATORS.match(text)
    if match is None:
        r.fail("accelerators", f"{text!r}: write COUNTxMODEL, e.g. 8xH100")
        return None, 0
    known = find_model(match.group(2))
    if known is None:
        r.fail("accelerators", f"{match.group(2)!r} is not a model the catalog knows")
        return None, 0
    count = int(match.group(1))
    if not 1 <= count <= 64:
        r.fail("accelerators", f"{count} accelerators: between 1 and 64 per server")
    return known.name, count


def _disks(r: _Reader) -> tuple[Disk, ...]:
    value = r.raw("disks")
    if value is None:
        return ()
    parts = value if isinstance(value, list) else str(value).split(",")
    disks = []
    for part in parts:
        match = DISK.match(str(part))
        if match is None:
            r.fail("disks", f"{part!r}: write COUNTxSIZE TYPE, e.g. 8x3.84T nvme")
            continue
        size = Decimal(match.group(2)) * (1024 if match.group(3).upper() == "T" else 1)
        disks.append(Disk(int(match.group(1) or 1), int(size), (match.group(4) or "ssd").lower()))
    return tuple(disks)


def _links(r: _Reader) -> tuple[Link, ...]:
    value = r.raw("links")
    if value is None:
        return ()
    parts = value if isinstance(value, list) else str(value).split(";")
    links: list[Link] = []
    for part in parts:
        if isinstance(part, Mapping):
            port, peer = part.get("port"), part.get("to")
        else:
            port, _, peer = str(part).strip().partition(":")
            if not peer:  # "peer" alone: the next free port number
                port, peer = None, port
        try:
            number = int(port) if port is not None else len(links) + 1
        except (TypeError, ValueError):
            r.fail("links", f"{part!r}: write PORT:PEER, e.g. 1:gpu-a01")
            continue
        if not peer:
            r.fail("links", f"{part!r}: which asset does port {number} link to?")
            continue
        links.append(Link(number, str(peer).strip().lower()))
    ports = [link.port for link in links]
    if len(set(ports)) != len(ports):
        r.fail("links", "a port is linked twice")
    return tuple(links)


def _date(r: _Reader) -> date | None:
    value = r.raw("purchase_date")
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        r.fail("purchase_date", f"{value!r} is not a date; write YYYY-MM-DD")
        return None


def _capacity(r: _Reader) -> int:
    value = r.raw("capacity_tib")
    if value is None:
        return 0
    try:
        tib = Decimal(str(value).strip())
    except InvalidOperation:
        r.fail("capacity_tib", f"{value!r} is not a number of TiB")
        return 0
    if not tib.is_finite() or tib < 0:
        r.fail("capacity_tib", "must be a positive number of TiB")
        return 0
    return int(tib * 1024)


def check_links(specs: Sequence[AssetSpec], known: set[str]) -> None:
    """Every link names an asset of the file or of the register."""
    names = known | {s.name for s in specs}
    problems = [
        f"line {s.line}: {s.name}: links: port {link.port} links to {link.peer!r}, "
        "which is neither in the file nor in the register" if s.line else
        f"{s.name}: links: {link.peer!r} is not in the register"
        for s in specs for link in s.links if link.peer not in names
    ]
    if problems:
        raise InvalidAssets(problems)


# -- derived from the register ----------------------------------------------------------------


@dataclass(frozen=True)
class ServerPlace:
    name: str
    hostname: str | None
    serial: str | None
    rack: str
    nvlink_island: str


@dataclass(frozen=True)
class SwitchPlace:
    name: str
    tier: SwitchTier
    peers: tuple[str, ...]  # linked assets, by port


def match_nodes(nodes: Mapping[str, Mapping[str, str]],
                servers: Iterable[ServerPlace]) -> dict[str, str]:
    """Engine node id -> server name: by hostname, then by name, then by the serial number
    the engine reports (label ``serial``). A server matches one node at most."""
    by_host, by_name, by_serial = {}, {}, {}
    for s in servers:
        if s.hostname:
            by_host[s.hostname.lower()] = s.name
        by_name[s.name] = s.name
        if s.serial:
            by_serial[s.serial] = s.name
    matched: dict[str, str] = {}
    taken: set[str] = set()
    for node_id in sorted(nodes):
        key = node_id.lower()
        serial = nodes[node_id].get("serial", "")
        name = by_host.get(key) or by_name.get(key) or by_serial.get(serial)
        if name is not None and name not in taken:
            matched[node_id] = name
            taken.add(name)
    return matched


def topology_labels(servers: Iterable[ServerPlace],
                    switches: Iterable[SwitchPlace]) -> dict[str, dict[str, str]]:
    """Server name -> its place in the fabric, as the scheduler's topology labels: its rack,
    NVLink island, leaf switch (the first leaf, by name, it is cabled to) and that leaf's
    spine. Empty values are left out: the engine's own labels then stand."""
    switches = sorted(switches, key=lambda s: s.name)
    leaves = [s for s in switches if s.tier is SwitchTier.LEAF]
    spine_of = {
        leaf.name: next((s.name for s in switches
                         if s.tier is SwitchTier.SPINE and (leaf.name in s.peers
                                                            or s.name in leaf.peers)), "")
        for leaf in leaves
    }
    labels: dict[str, dict[str, str]] = {}
    for server in servers:
        leaf = next((s.name for s in leaves if server.name in s.peers), "")
        found = {"rack": server.rack, "nvlink_island": server.nvlink_island,
                 "leaf_switch": leaf, "spine": spine_of.get(leaf, "")}
        labels[server.name] = {k: v for k, v in found.items() if v}
    return labels
