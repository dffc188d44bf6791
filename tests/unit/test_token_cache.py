"""The token cache: a hit within the TTL, never past the token's own expiry, forgotten on
revocation, bounded in size, and off at TTL 0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpucloud.api.token_cache import TokenCache
from gpucloud.core.tenancy import Principal, Role

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ALICE = Principal("usr_a", "alice", "tnt_a", "acme", Role.MEMBER, is_operator=False)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_checked_token_is_answered_from_memory_until_the_ttl_passes() -> None:
    clock = Clock()
    cache = TokenCache(ttl_s=5, monotonic=clock)
    assert cache.get("h1", NOW) is None
    cache.put("h1", ALICE, None)
    clock.t += 4.9
    assert cache.get("h1", NOW) == ALICE
    clock.t += 0.2
    assert cache.get("h1", NOW) is None  # stale: the database is asked again
    assert len(cache) == 0


def test_a_token_that_expires_meanwhile_is_not_answered() -> None:
    cache = TokenCache(ttl_s=60, monotonic=Clock())
    cache.put("h1", ALICE, NOW + timedelta(seconds=1))
    assert cache.get("h1", NOW) == ALICE
    assert cache.get("h1", NOW + timedelta(seconds=1)) is None


def test_forget_drops_a_revoked_token_at_once() -> None:
    cache = TokenCache(ttl_s=60, monotonic=Clock())
    cache.put("h1", ALICE, None)
    cache.forget("h1")
    assert cache.get("h1", NOW) is None
    cache.forget("never-seen")  # no error


def test_the_cache_keeps_at_most_max_tokens_dropping_the_least_recent() -> None:
    cache = TokenCache(ttl_s=60, max_tokens=2, monotonic=Clock())
    for name in ("h1", "h2", "h3"):
        cache.put(name, ALICE, None)
    assert len(cache) == 2
    assert cache.get("h1", NOW) is None
    assert cache.get("h3", NOW) == ALICE


def test_ttl_zero_turns_caching_off() -> None:
    cache = TokenCache(ttl_s=0, monotonic=Clock())
    cache.put("h1", ALICE, None)
    assert cache.get("h1", NOW) is None
