"""Parsing of the human quantities users type: memory sizes, durations, simulated GPU specs."""

from __future__ import annotations

import re

from gpucloud.core.catalog import AcceleratorModel, resolve_model
from gpucloud.core.errors import InvalidRequest

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_MIB_PER_UNIT = {"k": 1 / 1024, "m": 1, "": 1, "g": 1024, "t": 1024 * 1024}


def parse_memory_mib(value: str | int, field: str = "memory") -> int:
    """'16G', '16GiB', '512M' or a plain number of MiB -> MiB. Units are binary (G = GiB)."""
    if isinstance(value, bool):
        raise InvalidRequest(f"{field}: expected a size such as 16G, got {value!r}", field)
    if isinstance(value, int):
        mib = value
    else:
        match = _MEMORY.match(value)
        if not match:
            raise InvalidRequest(
                f"{field}: {value!r} is not a size; write a number with a unit, e.g. 16G or 512M",
                field,
            )
        number, unit = float(match.group(1)), match.group(2).lower()
        mib = round(number * _MIB_PER_UNIT[unit])
    if mib <= 0:
        raise InvalidRequest(f"{field}: must be more than zero, got {value!r}", field)
    return mib


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])", re.IGNORECASE)
_SECONDS_PER = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration_s(value: str | int | float, field: str = "max_duration") -> int:
    """'2h', '1h30m', '90s', '45' (seconds) -> whole seconds, at least 1."""
    if isinstance(value, bool):
        raise InvalidRequest(f"{field}: expected a duration such as 2h, got {value!r}", field)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _DURATION_PART.findall(text)
            if not parts or _DURATION_PART.sub("", text).strip():
                raise InvalidRequest(
                    f"{field}: {value!r} is not a duration; write e.g. 2h, 30m, 1h30m or 90s",
                    field,
                )
            seconds = sum(float(n) * _SECONDS_PER[u.lower()] for n, u in parts)
    if seconds <= 0:
        raise InvalidRequest(f"{field}: must be positive, got {value!r}", field)
    return max(1, round(seconds))


def parse_simulated_gpus(spec: str) -> list[tuple[int, AcceleratorModel]]:
    """'8xH100,4xA100-80G' -> [(8, H100), (4, A100-80G)]; each group is one simulated node."""
    groups: list[tuple[int, AcceleratorModel]] = []
    for raw in spec.split(","):
        part = raw.strip()
        match = re.fullmatch(r"(\d+)\s*[xX*]\s*(.+)", part)
        if not match:
            raise InvalidRequest(
                f"--simulate-gpus: {part!r} is not COUNTxMODEL, e.g. 8xH100", "simulate_gpus"
            )
        count = int(match.group(1))
        if not 1 <= count <= 64:
            raise InvalidRequest(
                f"--simulate-gpus: {part!r} needs between 1 and 64 GPUs", "simulate_gpus"
            )
        groups.append((count, resolve_model(match.group(2))))
    return groups


def format_mib(mib: int) -> str:
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"
