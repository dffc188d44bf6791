from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucloud.billing.money import Money, parse_amount
from gpucloud.billing.pricing import (
    Footprint,
    PriceVersion,
    Tier,
    price_per_hour_minor,
    rate,
    version_at,
)
from gpucloud.core.errors import InvalidRequest

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BOOK = PriceVersion(
    1, T0, "CNY", {"H100": 360000}, cpu_core_hour=3600, memory_gib_hour=0, spot_discount_pct=60
)
ONE_H100 = Footprint(1, "H100", 0, 0)


def test_the_acceptance_price_is_one_yuan_per_second() -> None:
    charge = rate(ONE_H100, T0, 6, [BOOK])
    assert (charge.money_minor, charge.remainder) == (600, 0)
    assert price_per_hour_minor(BOOK, ONE_H100) == 360000


def test_a_price_change_mid_window_splits_the_charge() -> None:
    cheaper = BOOK.with_gpu_price("H100", 180000, 2, T0 + timedelta(seconds=4))
    charge = rate(ONE_H100, T0, 10, [BOOK, cheaper])
    assert charge.segments == ((1, 4), (2, 6))
    assert charge.money_minor == 4 * 100 + 6 * 50


def test_cpu_and_memory_are_priced_per_core_and_gib() -> None:
    book = PriceVersion(1, T0, "CNY", {}, cpu_core_hour=3600, memory_gib_hour=7200)
    charge = rate(Footprint(0, None, 1500, 2048), T0, 10, [book])
    assert charge.money_minor == 15 + 40  # 1.5 fen/s of CPU, 4 fen/s of memory


def test_spot_gets_its_discount() -> None:
    spot = Footprint(1, "H100", 0, 0, Tier.SPOT)
    assert rate(spot, T0, 10, [BOOK]).money_minor == 400


def test_packages_cover_gpu_time_before_money() -> None:
    charge = rate(Footprint(2, "H100", 1000, 0), T0, 10, [BOOK], package_card_seconds=15)
    assert charge.package_card_seconds == 15
    assert charge.money_minor == 5 * 100 + 10 * 1  # 5 uncovered card-seconds + CPU


@settings(max_examples=100, deadline=None)
@given(
    price=st.integers(1, 10_000_000),
    cpu=st.integers(0, 64000),
    mem=st.integers(0, 2**20),
    windows=st.lists(st.integers(1, 400), min_size=1, max_size=30),
)
def test_remainders_carry_so_windows_add_up_to_one_rating(
    price: int, cpu: int, mem: int, windows: list[int]
) -> None:
    book = PriceVersion(1, T0, "CNY", {"L40S": price}, cpu_core_hour=777, memory_gib_hour=13)
    fp = Footprint(3, "L40S", cpu, mem)
    total, remainder, at = 0, 0, T0
    for seconds in windows:
        charge = rate(fp, at, seconds, [book], remainder)
        total, remainder = total + charge.money_minor, charge.remainder
        at += timedelta(seconds=seconds)
    whole = rate(fp, T0, sum(windows), [book])
    assert (total, remainder) == (whole.money_minor, whole.remainder)


def test_no_version_in_force_is_an_error() -> None:
    with pytest.raises(LookupError):
        version_at([BOOK], T0 - timedelta(seconds=1))


def test_money_parsing_is_exact() -> None:
    assert parse_amount("12.34", "CNY") == Money(1234, "CNY")
    assert str(Money(-150, "CNY")) == "-1.50 CNY"
    assert parse_amount("5", "JPY") == Money(5, "JPY")
    with pytest.raises(InvalidRequest, match="2 decimals"):
        parse_amount("0.001", "CNY")
    with pytest.raises(InvalidRequest):
        parse_amount("ten", "CNY")
    with pytest.raises(ValueError, match="cannot mix"):
        Money(1, "CNY") + Money(1, "USD")
