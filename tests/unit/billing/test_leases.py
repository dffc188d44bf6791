"""Rating of metered leases: exact, carried remainders, split at price changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gpucloud.billing.leases import (
    MONTH_SECONDS,
    LeaseKind,
    price_per_hour_minor,
    rate_lease,
)
from gpucloud.billing.pricing import PriceVersion

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def book(version: int = 1, at: datetime = T0, storage: int = 30, server: int = 0) -> PriceVersion:
    return PriceVersion(version, at, "CNY", {}, storage_gib_month=storage,
                        server_hour={"8xH100": server} if server else {})


def test_a_month_of_100_gib_at_30_per_gib_month_costs_3000() -> None:
    charge = rate_lease(LeaseKind.STORAGE, "", 100, T0, MONTH_SECONDS, [book()])
    assert (charge.money_minor, charge.remainder) == (3000, 0)


def test_a_server_hour_costs_its_price_and_an_unpriced_server_costs_nothing() -> None:
    versions = [book(server=36_000)]
    assert rate_lease(LeaseKind.SERVER, "8xH100", 1, T0, 3600, versions).money_minor == 36_000
    assert rate_lease(LeaseKind.SERVER, "8xH100", 2, T0, 1, versions).money_minor == 20
    assert rate_lease(LeaseKind.SERVER, "other", 1, T0, 3600, versions).money_minor == 0


@given(st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=30),
       st.integers(min_value=1, max_value=2048))
def test_charging_in_windows_never_loses_or_invents_money(windows: list[int], gib: int) -> None:
    versions = [book()]
    total, remainder, at = 0, 0, T0
    for seconds in windows:
        charge = rate_lease(LeaseKind.STORAGE, "", gib, at, seconds, versions, remainder)
        total, remainder = total + charge.money_minor, charge.remainder
        at += timedelta(seconds=seconds)
    exact_numerator = sum(windows) * gib * 30
    assert total == exact_numerator // MONTH_SECONDS
    assert remainder == exact_numerator % MONTH_SECONDS


def test_a_price_change_splits_the_window() -> None:
    later = T0 + timedelta(seconds=10)
    versions = [book(server=3600), book(2, later, server=7200)]
    charge = rate_lease(LeaseKind.SERVER, "8xH100", 1, T0, 20, versions)
    assert charge.segments == ((1, 10), (2, 10))
    assert charge.money_minor == 10 * 1 + 10 * 2


def test_the_quote_per_hour_is_rounded_up() -> None:
    # 1 GiB at 30 per month is 30/720 = 0.0417 an hour: quoted as 1 minor unit.
    assert price_per_hour_minor(book(), LeaseKind.STORAGE, "", 1) == 1
    assert price_per_hour_minor(book(), LeaseKind.STORAGE, "", 720) == 30
