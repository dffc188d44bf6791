"""Identifiers: a short kind prefix plus a time-ordered random part.

Ids sort by creation time (like ULIDs), which gives stable cursor pagination for free, and the
prefix tells a human what an id names (``job_...``, ``tnt_...``).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class IdFactory:
    """Makes ids that sort by the time given; monotonic within one process."""

    def __init__(self, random_bits: Callable[[int], int] = secrets.randbits) -> None:
        self._random_bits = random_bits
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def new(self, prefix: str, now: datetime) -> str:
        ms = int(now.timestamp() * 1000)
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                self._counter += 1
            else:
                self._last_ms = ms
                self._counter = self._random_bits(19)  # headroom: no wrap within a ms
            tail = (self._counter << 20) | self._random_bits(20)
        return f"{prefix}_{_b32(ms, 9)}{_b32(tail & ((1 << 40) - 1), 8)}"
