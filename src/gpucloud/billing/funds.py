"""Can a tenant afford something, for how long, and when must its jobs stop: pure arithmetic.

Everything is in 1/SCALE minor units (see ``pricing``). Prepaid packages count at the value of
the GPU time they cover under the current prices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gpucloud.billing.pricing import (
    SCALE,
    Footprint,
    PriceVersion,
    gpu_units_per_card_second,
    units_per_second,
)


@dataclass(frozen=True)
class Holdings:
    money_minor: int
    package_card_seconds: Mapping[str, int]  # model -> card-seconds left

    def value_units(self, version: PriceVersion) -> int:
        packages = sum(
            seconds * gpu_units_per_card_second(version, model)
            for model, seconds in self.package_card_seconds.items()
            if seconds > 0
        )
        return self.money_minor * SCALE + packages


def burn_units_per_second(version: PriceVersion, running: Iterable[Footprint]) -> int:
    return sum(units_per_second(version, fp) for fp in running)


def seconds_left(
    holdings: Holdings, version: PriceVersion, running: Iterable[Footprint]
) -> float | None:
    """How long the wallet lasts at the current burn rate; None when nothing is burning."""
    burn = burn_units_per_second(version, running)
    if burn <= 0:
        return None
    return max(0.0, holdings.value_units(version) / burn)


def admission_shortfall_minor(
    holdings: Holdings,
    version: PriceVersion,
    fp: Footprint,
    runway_s: int,
    max_duration_s: int | None,
) -> int:
    """What is missing (in minor units, rounded up) to run ``fp`` for the runway; 0 if covered."""
    seconds = runway_s if max_duration_s is None else min(runway_s, max_duration_s)
    missing = units_per_second(version, fp) * seconds - holdings.value_units(version)
    return max(0, -(-missing // SCALE))


def must_stop(
    holdings: Holdings, version: PriceVersion, running: Iterable[Footprint], horizon_s: float
) -> bool:
    """Stop now if what is left would not pay for ``horizon_s`` more seconds (the time it takes
    to stop: grace period plus one metering interval), so that the debt stays within that."""
    burn = burn_units_per_second(version, running)
    return burn > 0 and holdings.value_units(version) <= burn * horizon_s
