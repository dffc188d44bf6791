"""What an asset costs per day, and per GPU-hour, set against what it earned: pure arithmetic
in exact fractions of minor units, rounded (half to even) only when shown.

cost per day = depreciation (straight-line over its months, none once written off)
             + power (its watts around the clock at the price of a kWh)
             + operating cost (per month, over the 365/12 days of an average month)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from fractions import Fraction

DAYS_PER_MONTH = Fraction(365, 12)


@dataclass(frozen=True)
class CostInputs:
    purchase_cost_minor: int
    purchase_date: date | None
    depreciation_months: int
    power_watts: int
    opex_month_minor: int
    gpus: int


@dataclass(frozen=True)
class DailyCost:
    depreciation: Fraction
    power: Fraction
    opex: Fraction

    @property
    def total(self) -> Fraction:
        return self.depreciation + self.power + self.opex


def daily_cost(asset: CostInputs, on: date, kwh_price_minor: Fraction) -> DailyCost:
    life_days = asset.depreciation_months * DAYS_PER_MONTH
    written_off = (asset.purchase_date is not None
                   and (on - asset.purchase_date).days >= life_days)
    not_yet = asset.purchase_date is not None and on < asset.purchase_date
    depreciation = (Fraction(0) if written_off or not_yet or life_days <= 0
                    else Fraction(asset.purchase_cost_minor) / life_days)
    kwh_per_day = Fraction(asset.power_watts * 24, 1000)
    return DailyCost(depreciation, kwh_per_day * kwh_price_minor,
                     Fraction(asset.opex_month_minor) / DAYS_PER_MONTH)


def per_gpu_hour(per_day: Fraction, gpus: int) -> Fraction | None:
    return None if gpus <= 0 else per_day / (gpus * 24)


def round_minor(value: Fraction) -> int:
    """Half to even, as the ledger rounds."""
    return round(value)
