"""Rating what a tenant holds outside any allocation: storage by the GiB, servers whole.

A lease is charged per whole second like an allocation. Its price is per GiB-month (storage, a
month being 30 days) or per server-hour, so one second costs price / 2,592,000 or price / 3,600
of a minor unit per unit held; the fraction below one minor unit is carried in the lease's
``remainder`` (in 1/denominator minor units of its kind), so nothing is lost to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gpucloud.billing.pricing import PriceVersion, split_by_version

MONTH_SECONDS = 30 * 24 * 3600


class LeaseKind(StrEnum):
    STORAGE = "storage"  # quantity in GiB: volumes, stopped instances' disks
    SERVER = "server"  # quantity in servers of the model ``item``: bare metal leased whole


@dataclass(frozen=True)
class LeaseCharge:
    money_minor: int
    remainder: int  # in 1/denominator(kind) minor units, carried to the next window
    segments: tuple[tuple[int, int], ...]  # (price version, seconds)


def denominator(kind: LeaseKind) -> int:
    """Seconds in the period the kind's price is quoted for."""
    return MONTH_SECONDS if kind is LeaseKind.STORAGE else 3600


def unit_price(version: PriceVersion, kind: LeaseKind, item: str) -> int:
    """Minor units per unit per period (GiB-month or server-hour); 0 when unpriced."""
    if kind is LeaseKind.STORAGE:
        return version.storage_gib_month
    return version.server_hour.get(item, 0)


def rate_lease(
    kind: LeaseKind,
    item: str,
    quantity: int,
    start: datetime,
    seconds: int,
    versions: Sequence[PriceVersion],
    remainder: int = 0,
) -> LeaseCharge:
    """Cost of holding ``quantity`` units for ``seconds`` whole seconds from ``start``."""
    accrued = remainder
    segments = []
    for version, span in split_by_version(versions, start, seconds):
        accrued += span * quantity * unit_price(version, kind, item)
        segments.append((version.version, span))
    whole, left = divmod(accrued, denominator(kind))
    return LeaseCharge(money_minor=whole, remainder=left, segments=tuple(segments))


def price_per_hour_minor(version: PriceVersion, kind: LeaseKind, item: str, quantity: int) -> int:
    """Rounded up: a quote is never below the charge."""
    per_period = quantity * unit_price(version, kind, item)
    return -(-per_period * 3600 // denominator(kind))
