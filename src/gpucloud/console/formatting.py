"""How the console writes numbers, money, times and durations (Jinja filters)."""

from __future__ import annotations

from datetime import UTC, datetime

from gpucloud.schemas import Amount


def money(value: Amount | str | None, currency: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, Amount):
        return f"{value.amount} {value.currency}"
    return f"{value} {currency}".strip()


def duration(seconds: float | None) -> str:
    """'45 s', '12 min', '3 h 05 min', '4 d 2 h'; '-' for none."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s < 600 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def when(at: datetime | None) -> str:
    if at is None:
        return "-"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(at: datetime | None, now: datetime | None = None) -> str:
    if at is None:
        return "-"
    now = now or datetime.now(UTC)
    return f"{duration((now - at).total_seconds())} ago"


def mib(value: int) -> str:
    """'512 MiB', '16 GiB', '23.5 GiB'."""
    if value < 1024:
        return f"{value} MiB"
    gib = value / 1024
    return f"{gib:.0f} GiB" if value % 1024 == 0 else f"{gib:.1f} GiB"


def cpus(value: float) -> str:
    return f"{value:g}"


def plural(count: float, one: str, many: str) -> str:
    return f"{count:g} {one if count == 1 else many}"


def state_class(state: str) -> str:
    """The CSS class of a job state's badge."""
    return f"state state-{state.lower()}"
