"""Money is an integer count of minor units (fen, cents) with a currency: never a float."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from gpucloud.core.errors import InvalidRequest

# ISO 4217 minor-unit exponents of the currencies we expect; others default to 2.
EXPONENT = {"CNY": 2, "USD": 2, "EUR": 2, "JPY": 0, "KRW": 0, "GBP": 2, "HKD": 2, "SGD": 2}


def exponent(currency: str) -> int:
    return EXPONENT.get(currency, 2)


@dataclass(frozen=True, order=True)
class Money:
    minor: int
    currency: str

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot mix {self.currency} and {other.currency}")

    @property
    def decimal(self) -> Decimal:
        return Decimal(self.minor).scaleb(-exponent(self.currency))

    def __str__(self) -> str:
        # No thousands separators: the same digits as the API's exact amounts.
        return f"{self.decimal:.{exponent(self.currency)}f} {self.currency}"

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)


def parse_amount(text: str | int | Decimal, currency: str, field: str = "amount") -> Money:
    """'12.34' -> Money(1234, CNY). More decimals than the currency has is an error, not a
    silent rounding: money typed by a person must mean exactly what it says."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise InvalidRequest(
            f"{field}: {text!r} is not an amount; write e.g. 100 or 12.50", field
        ) from None
    if not value.is_finite():
        raise InvalidRequest(f"{field}: {text!r} is not a finite amount", field)
    places = exponent(currency)
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise InvalidRequest(f"{field}: {currency} has {places} decimals; {text!r} has more", field)
    return Money(int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN)), currency)
