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
