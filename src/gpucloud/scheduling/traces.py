"""Parse the openb node and pod lists (Alibaba GPU trace v2023) into snapshot types.

Pure: takes the CSV text (or lines), not a path, so callers do the file I/O. Handles the full
pod format (with ``gpu_spec`` model constraints and times) and the short ``multigpu*`` format
(``name,cpu_milli,memory_mib,num_gpu,gpu_milli``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass

from gpucloud.scheduling.model import MILLI, Device, Node, Workload

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")


class TraceError(ValueError):
    """A row or header that cannot be read; the message names the row."""


@dataclass(frozen=True)
class PodTimes:
    creation: int | None
    deletion: int | None
    scheduled: int | None


def _rows(lines: Iterable[str], required: tuple[str, ...]) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(lines)
    missing = [c for c in required if c not in (reader.fieldnames or ())]
    if missing:
        raise TraceError(f"missing column(s) {', '.join(missing)}; have {reader.fieldnames}")
    yield from enumerate(reader, start=2)


def _int(row: dict[str, str], key: str, number: int) -> int:
    value = (row.get(key) or "").strip()
    if value == "":
        return 0
    try:
        return int(float(value))
    except ValueError:
        raise TraceError(f"line {number}: {key}={value!r} is not a number") from None


def parse_nodes(lines: Iterable[str]) -> list[Node]:
    nodes = []
    for number, row in _rows(lines, NODE_COLUMNS):
        gpus = _int(row, "gpu", number)
        model = (row.get("model") or "").strip()
        if gpus and not model:
            raise TraceError(f"line {number}: {gpus} GPUs without a model")
        nodes.append(Node(
            name=row["sn"].strip(),
            cpu_milli=_int(row, "cpu_milli", number),
            memory_mib=_int(row, "memory_mib", number),
            devices=tuple(Device(j, model) for j in range(gpus)),
        ))
    return nodes


def parse_pods(lines: Iterable[str]) -> list[Workload]:
    return [w for w, _ in parse_pods_with_times(lines)]


def parse_pods_with_times(lines: Iterable[str]) -> list[tuple[Workload, PodTimes]]:
    pods = []
    for number, row in _rows(lines, POD_COLUMNS):
        count = _int(row, "num_gpu", number)
        milli = _int(row, "gpu_milli", number) if count else 0
        if count and milli == 0:
            milli = MILLI  # some lists leave the share empty for whole GPUs
        if count > 1 and milli != MILLI:
            raise TraceError(f"line {number}: {count} GPUs of {milli} milli each")
        spec = (row.get("gpu_spec") or "").strip()
        models = frozenset(m for m in spec.split("|") if m) or None
        times = PodTimes(*(_int(row, k, number) if (row.get(k) or "").strip() else None
                           for k in ("creation_time", "deletion_time", "scheduled_time")))
        pods.append((Workload(
            id=row["name"].strip(),
            cpu_milli=_int(row, "cpu_milli", number),
            memory_mib=_int(row, "memory_mib", number),
            gpu_count=count,
            gpu_milli=milli,
            gpu_models=models if count else None,
        ), times))
    return pods
