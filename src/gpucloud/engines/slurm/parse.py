"""Slurm's JSON (``sinfo --json``, ``squeue --json``, slurmrestd) to plain records: pure.

Both ``sinfo --json`` and slurmrestd's ``/nodes`` give the same node objects, and ``squeue
--json`` and ``/jobs`` the same job objects (Slurm 22.05, OpenAPI v0.0.38). Later releases
turned some scalars into objects (``{"set": true, "number": 5}``) and ``job_state`` into a list;
both spellings are read here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpucloud.core.catalog import find_model
from gpucloud.core.errors import EngineError
from gpucloud.engines.base import DeviceReport, NodeReport
from gpucloud.engines.slurm.hostlist import expand, split_top

DRAIN_PREFIX = "gpucloud: "  # the drains gpucloud made (see store.inventory.DRAIN_PREFIX)
TOPOLOGY_KEYS = ("nvlink_island", "leaf_switch", "rack")

# Node states and flags that mean "do not place work here" (sinfo's state + state_flags).
# "unknown" alone is not here: every node reads so for a moment after slurmctld restarts, until
# its slurmd registers again (a node that stays silent gets NOT_RESPONDING, then DOWN).
_UNHEALTHY_STATES = {"down", "error", "future"}
_UNHEALTHY_FLAGS = {"NOT_RESPONDING", "FAIL", "POWERED_DOWN", "POWERING_DOWN", "POWER_DOWN",
                    "REBOOT_ISSUED", "INVALID_REG"}


@dataclass(frozen=True)
class GresItem:
    name: str  # "gpu"
    type: str | None  # "h100", or None for an untyped "gpu:8"
    count: int


@dataclass(frozen=True)
class SlurmNode:
    name: str
    state: str  # lower case base state: "idle", "mixed", "allocated", "down", ...
    flags: frozenset[str]  # upper case: "DRAIN", "NOT_RESPONDING", ...
    reason: str
    cpus: int
    memory_mib: int
    address: str
    gres: tuple[GresItem, ...]
    features: tuple[str, ...]
    partitions: tuple[str, ...]


@dataclass(frozen=True)
class SlurmJob:
    job_id: int
    name: str
    state: str  # upper case base state: "PENDING", "RUNNING", "COMPLETED", "NODE_FAIL", ...
    reason: str
    wait_status: int | None  # the raw wait status (squeue's exit_code): 768 is "exit 3"
    nodes: tuple[str, ...]
    start_time: int | None  # epoch seconds, 0/None when unknown
    end_time: int | None
    comment: str = ""
    restarts: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


# ---------------------------------------------------------------------------------- scalars


def _number(value: Any) -> int | None:
    """22.05 gives plain numbers; 23.x gives {"set": bool, "infinite": bool, "number": n}."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, Mapping):
        if not value.get("set", True) or value.get("infinite", False):
            return None
        return _number(value.get("number"))
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    return [str(v) for v in value]


# ------------------------------------------------------------------------------------ nodes


def parse_gres(text: str) -> tuple[GresItem, ...]:
    """``gpu:h100:8(S:0-1),gpu:a100:2,shard:4`` -> items; ``(null)`` and ``N/A`` -> none."""
    items = []
    for raw in split_top(text, "(", ")"):
        part = raw.split("(", 1)[0].strip()
        if not part or part in ("(null)", "N/A"):
            continue
        fields = part.split(":")
        name = fields[0]
        count = 1
        gres_type: str | None = None
        if len(fields) >= 2 and fields[-1].isdigit():
            count = int(fields[-1])
            gres_type = ":".join(fields[1:-1]) or None
        elif len(fields) >= 2:
            gres_type = ":".join(fields[1:])
        items.append(GresItem(name, gres_type, count))
    return tuple(items)


def parse_node(raw: Mapping[str, Any]) -> SlurmNode:
    try:
        name = str(raw["name"])
    except KeyError as err:
        raise EngineError(f"Slurm node without a name: {dict(raw)!r:.200}") from err
    state_value = raw.get("state", "")
    states = state_value if isinstance(state_value, list) else [state_value]
    state = str(states[0]).lower() if states else ""
    flags = {f.upper() for f in _list(raw.get("state_flags"))}
    flags |= {str(s).upper() for s in states[1:]}  # 23.x: ["IDLE", "DRAIN"]
    features = _list(raw.get("active_features")) or _list(raw.get("features"))
    return SlurmNode(
        name=name,
        state=state,
        flags=frozenset(flags),
        reason=_text(raw.get("reason")),
        cpus=_number(raw.get("cpus")) or 0,
        memory_mib=_number(raw.get("real_memory")) or 0,
        address=_text(raw.get("address")) or name,
        gres=parse_gres(_text(raw.get("gres"))),
        features=tuple(features),
        partitions=tuple(_list(raw.get("partitions"))),
    )


def feature_labels(features: Sequence[str]) -> dict[str, str]:
    """``leaf_switch=s1`` and ``rack:r1`` become labels; a bare feature ``nvlink`` becomes
    ``{"nvlink": "true"}``. The first spelling of a key wins."""
    labels: dict[str, str] = {}
    for feature in features:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)[=:](.+)", feature.strip())
        key, value = (match.group(1), match.group(2)) if match else (feature.strip(), "true")
        if key:
            labels.setdefault(key, value)
    return labels


def gpu_model(gres_type: str | None, default_model: str | None) -> str:
    """A GRES type such as ``h100`` or ``a100-80g`` as the catalog's name (``H100``)."""
    for candidate in (gres_type, default_model):
        if candidate:
            model = find_model(candidate)
            if model is not None:
                return model.name
    return (gres_type or default_model or "gpu").upper()


@dataclass(frozen=True)
class NodeGpus:
    """One node's GPUs as gpucloud numbers them: index -> Slurm GRES type (None: untyped)."""

    types: tuple[str | None, ...]


def node_gpus(node: SlurmNode) -> NodeGpus:
    types: list[str | None] = []
    for item in node.gres:
        if item.name == "gpu":
            types.extend([item.type] * item.count)
    return NodeGpus(tuple(types))


def node_health(node: SlurmNode) -> tuple[bool, str]:
    """Whether gpucloud may place work here, and why not. A drain gpucloud made itself is
    healthy (gpucloud tracks its quarantine); anyone else's drain is not."""
    reason = f" ({node.reason})" if node.reason else ""
    if node.state in _UNHEALTHY_STATES:
        extra = ", not responding" if "NOT_RESPONDING" in node.flags else ""
        return False, f"Slurm: node {node.state}{extra}{reason}"
    bad = sorted(node.flags & _UNHEALTHY_FLAGS)
    if bad:
        return False, f"Slurm: node {node.state}+{'+'.join(f.lower() for f in bad)}{reason}"
    if node.flags & {"DRAIN", "DRAINING", "DRAINED"} and not node.reason.startswith(DRAIN_PREFIX):
        return False, f"Slurm: node drained outside gpucloud{reason}"
    if "MAINTENANCE" in node.flags or "MAINT" in node.flags:
        return False, f"Slurm: node in a maintenance reservation{reason}"
    return True, ""


def node_report(node: SlurmNode, default_model: str | None = None) -> NodeReport:
    healthy, message = node_health(node)
    gpus = node_gpus(node)
    devices = []
    for index, gres_type in enumerate(gpus.types):
        model = gpu_model(gres_type, default_model)
        known = find_model(model)
        devices.append(DeviceReport(
            index=index,
            model=model,
            memory_mib=known.memory_gib * 1024 if known else 0,
            uuid=f"slurm-{node.name}-gpu{index}",
        ))
    drained = bool(node.flags & {"DRAIN", "DRAINING", "DRAINED"})
    return NodeReport(
        id=node.name,
        cpu_milli=node.cpus * 1000,
        memory_mib=node.memory_mib,
        devices=tuple(devices),
        healthy=healthy,
        message=message,
        labels=feature_labels(node.features),
        address=node.address,
        drained=drained,
        drain_reason=node.reason if drained else "",
    )


# ------------------------------------------------------------------------------------- jobs


def parse_job(raw: Mapping[str, Any]) -> SlurmJob:
    try:
        job_id = int(raw["job_id"])
    except (KeyError, TypeError, ValueError) as err:
        raise EngineError(f"Slurm job without a job_id: {dict(raw)!r:.200}") from err
    state_value = raw.get("job_state", "")
    if isinstance(state_value, list):  # 23.x: ["RUNNING", "COMPLETING"]
        state_value = state_value[0] if state_value else ""
    exit_value = raw.get("exit_code")
    if isinstance(exit_value, Mapping):  # 23.x: {"status": [...], "return_code": n, "signal"}
        signal = _number((exit_value.get("signal") or {}).get("id")) or 0
        code = _number(exit_value.get("return_code")) or 0
        wait_status: int | None = signal if signal else code << 8
    else:
        wait_status = _number(exit_value)
    try:
        nodes = tuple(expand(_text(raw.get("nodes"))))
    except ValueError:
        nodes = ()
    return SlurmJob(
        job_id=job_id,
        name=_text(raw.get("name")),
        state=str(state_value).upper(),
        reason=_text(raw.get("state_reason")),
        wait_status=wait_status,
        nodes=nodes,
        start_time=_number(raw.get("start_time")) or None,
        end_time=_number(raw.get("end_time")) or None,
        comment=_text(raw.get("comment")),
        restarts=_number(raw.get("restart_cnt")) or 0,
    )


def parse_document(doc: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    """The ``key`` array of a JSON answer, after checking its ``errors``."""
    errors = doc.get("errors") or []
    if errors:
        first = errors[0]
        detail = first
        if isinstance(first, Mapping):
            detail = first.get("description") or first.get("error") or dict(first)
        raise EngineError(f"{source}: Slurm reported an error: {detail}")
    items = doc.get(key)
    if not isinstance(items, list):
        raise EngineError(f"{source}: no {key!r} array in Slurm's answer")
    return items


def exit_code_of(wait_status: int) -> int:
    """A raw wait status in the shell's convention: 768 -> 3, 9 (SIGKILL) -> 137."""
    signal = wait_status & 0x7F
    if signal:
        return 128 + signal
    return (wait_status >> 8) & 0xFF
