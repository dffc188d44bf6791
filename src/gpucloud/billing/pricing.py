"""The price book and rating: what a usage window costs, exactly.

Prices are integers of minor units per hour (per month for storage). A second of use costs a
fraction of a minor unit, so rating accrues in units of 1/SCALE of a minor unit, where SCALE makes
every per-second rate an integer: 3600 s/h x 1000 milli-CPU x 1024 MiB/GiB x 100 (percent spot
discount). The accrued remainder below one minor unit is carried to the next window, so rounding
never loses or invents money: the sum charged over a job equals its exact cost rounded down once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

SCALE = 3600 * 1000 * 1024 * 100
_PER_GPU_SECOND = SCALE // 3600  # units per (minor/GPU-hour) per GPU-second
_PER_MILLICPU_SECOND = SCALE // (3600 * 1000)
_PER_MIB_SECOND = SCALE // (3600 * 1024)


class Tier(StrEnum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"


@dataclass(frozen=True)
class PackageOffer:
    """N card-hours of one model, bought up front at a discount and used before money."""

    name: str
    model: str
    gpu_hours: int
    price_minor: int


@dataclass(frozen=True)
class PriceVersion:
    """One complete version of the price book, in force from ``effective_from``."""

    version: int
    effective_from: datetime
    currency: str
    gpu_hour: Mapping[str, int]  # model -> minor units per GPU-hour
    cpu_core_hour: int = 0
    memory_gib_hour: int = 0
    storage_gib_month: int = 0
    spot_discount_pct: int = 0
    packages: tuple[PackageOffer, ...] = field(default=())
    server_hour: Mapping[str, int] = field(default_factory=dict)  # bare-metal model -> per hour

    def with_gpu_price(
        self, model: str, minor_per_hour: int, version: int, at: datetime
    ) -> PriceVersion:
        prices = dict(self.gpu_hour)
        prices[model] = minor_per_hour
        return PriceVersion(
            version,
            at,
            self.currency,
            prices,
            self.cpu_core_hour,
            self.memory_gib_hour,
            self.storage_gib_month,
            self.spot_discount_pct,
            self.packages,
            self.server_hour,
        )


@dataclass(frozen=True)
class Footprint:
    """What one allocation, or one whole job, holds: which is what it pays for. Amounts are
    totals; a multi-node job's are spread evenly over ``nodes`` (prices are linear in them, but
    which GPU models could host the job depends on what one node must hold)."""

    gpus: int
    gpu_model: str | None
    cpu_milli: int
    memory_mib: int
    tier: Tier = Tier.ON_DEMAND
    nodes: int = 1

    @property
    def gpus_per_node(self) -> int:
        return -(-self.gpus // self.nodes)


@dataclass(frozen=True)
class Charge:
    money_minor: int  # to take from the wallet
    package_card_seconds: int  # to take from the tenant's package of the model
    remainder: int  # accrued units below one minor unit, carried to the next window
    segments: tuple[tuple[int, int], ...]  # (price version, seconds) that were rated


def gpu_units_per_card_second(
    version: PriceVersion, model: str | None, tier: Tier = Tier.ON_DEMAND
) -> int:
    if model is None:
        return 0
    return version.gpu_hour.get(model, 0) * _PER_GPU_SECOND * _discount(version, tier) // 100


def base_units_per_second(version: PriceVersion, fp: Footprint) -> int:
    """CPU and memory cost of one second, in 1/SCALE minor units."""
    units = (
        fp.cpu_milli * version.cpu_core_hour * _PER_MILLICPU_SECOND
        + fp.memory_mib * version.memory_gib_hour * _PER_MIB_SECOND
    )
    return units * _discount(version, fp.tier) // 100


def _discount(version: PriceVersion, tier: Tier) -> int:
    return 100 - version.spot_discount_pct if tier is Tier.SPOT else 100


def units_per_second(version: PriceVersion, fp: Footprint) -> int:
    return fp.gpus * gpu_units_per_card_second(
        version, fp.gpu_model, fp.tier
    ) + base_units_per_second(version, fp)


def price_per_hour_minor(version: PriceVersion, fp: Footprint) -> int:
    """Rounded up: what we quote must never be less than what we will charge."""
    return -(-units_per_second(version, fp) * 3600 // SCALE)


def version_at(versions: Sequence[PriceVersion], at: datetime) -> PriceVersion:
    """The version in force at ``at``: the latest whose effective_from is not after it."""
    current = None
    for version in versions:
        if version.effective_from <= at:
            current = version
    if current is None:
        raise LookupError(f"no price version in force at {at.isoformat()}")
    return current


def split_by_version(
    versions: Sequence[PriceVersion], start: datetime, seconds: int
) -> list[tuple[PriceVersion, int]]:
    """``seconds`` whole seconds from ``start`` as (version in force, seconds) spans: a second
    that starts before the next version's effective_from takes the earlier price."""
    spans: list[tuple[PriceVersion, int]] = []
    done = 0
    while done < seconds:
        at = start + timedelta(seconds=done)
        version = version_at(versions, at)
        later = [v.effective_from for v in versions if v.effective_from > at]
        span = seconds - done
        if later:
            until_next = -(-(later[0] - at) // timedelta(seconds=1))
            span = min(span, max(1, until_next))
        spans.append((version, span))
        done += span
    return spans


def rate(
    fp: Footprint,
    start: datetime,
    seconds: int,
    versions: Sequence[PriceVersion],
    remainder: int = 0,
    package_card_seconds: int = 0,
) -> Charge:
    """Cost of ``seconds`` whole seconds from ``start``, split wherever the price changed.

    ``versions`` are sorted by effective_from. Package card-seconds of the footprint's model
    cover GPU time first; what they do not cover is charged in money.
    """
    accrued = remainder
    package_used = 0
    segments: list[tuple[int, int]] = []
    for version, span in split_by_version(versions, start, seconds):
        card_seconds = fp.gpus * span
        covered = min(card_seconds, package_card_seconds - package_used)
        package_used += covered
        accrued += (card_seconds - covered) * gpu_units_per_card_second(
            version, fp.gpu_model, fp.tier
        )
        accrued += span * base_units_per_second(version, fp)
        segments.append((version.version, span))
    return Charge(
        money_minor=accrued // SCALE,
        package_card_seconds=package_used,
        remainder=accrued % SCALE,
        segments=tuple(segments),
    )
