"""Keyset pagination over time-ordered ids: stable while rows are added, O(page) per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from gpucloud.core.errors import InvalidRequest

T = TypeVar("T")
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def paginate(
    session: Session,
    query: Select[Any],
    key: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None,
    newest_first: bool = True,
) -> Page[Any]:
    """Rows after ``cursor`` (the last key of the previous page), ``limit`` of them."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}", "limit")
    if cursor:
        value: Any = _int_cursor(cursor) if key.type.python_type is int else cursor
        query = query.where(key < value if newest_first else key > value)
    query = query.order_by(key.desc() if newest_first else key.asc()).limit(limit + 1)
    rows = list(session.scalars(query).unique())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = str(getattr(rows[-1], key.key)) if more and rows else None
    return Page(rows, next_cursor)


def _int_cursor(cursor: str) -> int:
    """A cursor of an integer key, refused (not a 500) when no page could have returned it."""
    try:
        value = int(cursor)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:  # a BIGINT: PostgreSQL would fail on a larger one
        raise InvalidRequest(
            f"cursor {cursor[:40]!r} is not one this list returned; pass the previous "
            "page's next_cursor",
            "cursor",
        )
    return value
