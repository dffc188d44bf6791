"""Principals of recently checked API tokens, so a busy client is not looked up per request.

The token check is a database read on every request; under load it was about a sixth of the
API's time (bench/load.py, py-spy). A valid token's principal is kept for ``ttl_s`` seconds
(monotonic), keyed by the token's hash, never by its secret. A token's own expiry is still
checked on every hit. A revocation on this replica forgets the token at once; on another
replica of the same database it takes effect within ``ttl_s`` (docs/security.md). Failed
checks are never cached: they keep meeting the database and the failed-check limiter.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gpucloud.core.clock import as_utc
from gpucloud.core.tenancy import Principal

DEFAULT_TTL_S = 5.0
MAX_TOKENS = 10_000  # memory stays bounded however many tokens call


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    token_expires_at: datetime | None  # the token's own expiry, checked on every hit
    fresh_until: float  # monotonic


class TokenCache:
    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        max_tokens: int = MAX_TOKENS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_tokens = max_tokens
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, token_hash: str, now: datetime) -> Principal | None:
        """The cached principal, or None: unknown, stale, or the token has expired since."""
        with self._lock:
            entry = self._entries.get(token_hash)
            if entry is None:
                return None
            expired = entry.token_expires_at is not None and as_utc(entry.token_expires_at) <= now
            if expired or entry.fresh_until <= self._monotonic():
                del self._entries[token_hash]
                return None
            return entry.principal

    def put(self, token_hash: str, principal: Principal, token_expires_at: datetime | None) -> None:
        if self.ttl_s <= 0:  # the operator turned caching off
            return
        entry = _Entry(principal, token_expires_at, self._monotonic() + self.ttl_s)
        with self._lock:
            self._entries[token_hash] = entry
            self._entries.move_to_end(token_hash)
            while len(self._entries) > self.max_tokens:
                self._entries.popitem(last=False)

    def forget(self, token_hash: str) -> None:
        """A token revoked here stops working here at once."""
        with self._lock:
            self._entries.pop(token_hash, None)

    def __len__(self) -> int:
        return len(self._entries)
