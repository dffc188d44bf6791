"""Failed token checks are limited per client address, so a token cannot be guessed online.

A sliding window per address: after ``max_failures`` failed checks within ``window_s``, every
check from that address is refused (429, Retry-After) until the oldest failure leaves the
window; a successful check does not reset it, so a valid token cannot launder guessing.
Missing tokens are not failures (nothing was guessed). The state is in memory, per process:
each replica limits on its own, which bounds a guesser at replicas x max_failures per window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gpucloud.core.errors import RateLimited, Unauthenticated

MAX_FAILURES = 20
WINDOW_S = 60.0
MAX_ADDRESSES = 100_000  # memory stays bounded under a spray from many addresses


class FailedAuthLimiter:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._now = now
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, address: str) -> None:
        """Raise ``RateLimited`` while ``address`` has used up its failures."""
        if self.max_failures <= 0:  # the operator turned the limit off
            return
        with self._lock:
            recent = self._recent(address)
            if recent is None or len(recent) < self.max_failures:
                return
            wait = recent[0] + self.window_s - self._now()
        raise RateLimited(
            f"too many failed token checks from {address}; retry in {math.ceil(wait)} s "
            "with a valid token",
            retry_after_s=max(wait, 1.0),
        )

    def failed(self, address: str) -> None:
        if self.max_failures <= 0:
            return
        with self._lock:
            recent = self._recent(address)
            if recent is None:
                recent = self._failures[address] = deque()
                if len(self._failures) > MAX_ADDRESSES:
                    self._failures.popitem(last=False)
            recent.append(self._now())
            self._failures.move_to_end(address)

    def _recent(self, address: str) -> deque[float] | None:
        recent = self._failures.get(address)
        if recent is None:
            return None
        horizon = self._now() - self.window_s
        while recent and recent[0] <= horizon:
            recent.popleft()
        if not recent:
            del self._failures[address]
            return None
        return recent

    @contextmanager
    def guard(self, address: str) -> Iterator[None]:
        """Around one token check: refused while limited, counted when it fails."""
        self.check(address)
        try:
            yield
        except Unauthenticated:
            self.failed(address)
            raise
