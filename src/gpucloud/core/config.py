"""Operator settings: a registry of known keys, each with a default and a parser."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpucloud.core.errors import InvalidRequest


@dataclass(frozen=True)
class SettingSpec:
    key: str
    default: Any
    parse: Callable[[str], Any]
    help: str


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}, got {value}")
        return value

    return parse


def _currency(text: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", text):
        raise ValueError(f"expected an ISO 4217 code such as CNY or USD, got {text!r}")
    return text


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    return parse


SETTINGS: dict[str, SettingSpec] = {s.key: s for s in (
    SettingSpec("billing.admission_runway_seconds", 600, _int_between(0, 30 * 86400),
                "a job is admitted only if the wallet covers its price for this long "
                "(or for its max duration if shorter)"),
    SettingSpec("billing.low_balance_warning_seconds", 3600, _int_between(0, 30 * 86400),
                "warn a tenant when its wallet lasts less than this at the current burn rate"),
    SettingSpec("billing.metering_interval_seconds", 1, _int_between(1, 60),
                "how often running allocations are charged (the unit stays one second)"),
    SettingSpec("billing.currency", "CNY", _currency,
                "the currency of new price-book versions and wallets"),
    SettingSpec("health.restart_budget", 3, _int_between(0, 1000),
                "restarts in a row without a new checkpoint before a faulted job gives up"),
    SettingSpec("health.restart_backoff_seconds", 1, _int_between(0, 3600),
                "the first restart after a fault waits this long; each next one twice more"),
    SettingSpec("health.restart_backoff_max_seconds", 60, _int_between(0, 86400),
                "the longest wait between restarts"),
    SettingSpec("health.burn_in_seconds", 10, _int_between(0, 86400),
                "how long a GPU or node quarantined by a fault stays out before its burn-in"),
    SettingSpec("health.retire_after_faults", 3, _int_between(1, 1000),
                "a GPU with this many faults within the retire window is retired"),
    SettingSpec("health.retire_window_hours", 24, _int_between(1, 24 * 365),
                "the window in which repeated faults retire a GPU"),
    SettingSpec("health.simulated_burn_in_passes", True, _bool,
                "whether the burn-in of simulated GPUs passes (for fault drills)"),
    SettingSpec("storage.volume_quota_gib", 1024, _int_between(0, 1024 * 1024),
                "the most GiB of volumes one tenant may hold at once"),
    SettingSpec("storage.volume_backend", "loop", _one_of("loop", "directory"),
                "new volumes as loop-mounted ext4 images with a hard size (local engine, as "
                "root; else directories) or as plain directories (size measured only)"),
    SettingSpec("storage.node_cache_mib", 102400, _int_between(0, 1024 * 1024 * 1024),
                "each node's dataset cache capacity (least recently used versions go first)"),
)}


def parse_setting(key: str, text: str) -> Any:
    spec = SETTINGS.get(key)
    if spec is None:
        raise InvalidRequest(f"unknown setting {key!r}; known: {', '.join(sorted(SETTINGS))}",
                             "key")
    try:
        return spec.parse(text)
    except ValueError as err:
        raise InvalidRequest(f"{key}: {err}", "value") from None
