"""The leader lease's pure decisions: who acquires, renews or follows, and when a pass may run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpucloud.core.leadership import (
    Held,
    LeaseRow,
    Step,
    decide,
    expiry,
    may_run,
    next_token,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def row(holder: str | None, token: int, expires_in_s: float) -> LeaseRow:
    return LeaseRow("controllers", holder, token, NOW + timedelta(seconds=expires_in_s))


def test_a_missing_released_or_expired_lease_is_acquired() -> None:
    assert decide(None, NOW, "a", None) is Step.ACQUIRE
    assert decide(row(None, 3, 10), NOW, "a", None) is Step.ACQUIRE
    assert decide(row("b", 3, 0), NOW, "a", None) is Step.ACQUIRE  # expires exactly now
    assert decide(row("b", 3, -1), NOW, "a", None) is Step.ACQUIRE


def test_the_holder_renews_only_its_own_token() -> None:
    assert decide(row("a", 3, 2), NOW, "a", Held(3, NOW)) is Step.RENEW
    # Same holder id but another token: not what we acquired, so we do not extend it.
    assert decide(row("a", 4, 2), NOW, "a", Held(3, NOW)) is Step.FOLLOW
    assert decide(row("a", 3, 2), NOW, "a", None) is Step.FOLLOW


def test_a_live_lease_of_a_process_gone_from_this_machine_is_taken_at_once() -> None:
    assert decide(row("b", 3, 4), NOW, "a", None, holder_gone=True) is Step.ACQUIRE
    assert decide(row("a", 3, 4), NOW, "a", Held(3, NOW), holder_gone=True) is Step.RENEW


def test_a_live_lease_of_another_replica_is_followed() -> None:
    assert decide(row("b", 3, 0.001), NOW, "a", None) is Step.FOLLOW
    assert decide(row("b", 3, 2), NOW, "a", Held(3, NOW)) is Step.FOLLOW


def test_tokens_only_grow_and_expiry_is_now_plus_ttl() -> None:
    assert next_token(None) == 1
    assert next_token(row("b", 41, 0)) == 42
    assert expiry(NOW, 5) == NOW + timedelta(seconds=5)


def test_a_pass_runs_only_while_the_last_renewal_is_fresh() -> None:
    assert not may_run(None, 100.0)
    assert may_run(100.0, 103.9, ttl_s=5, margin_s=1)
    assert not may_run(100.0, 104.0, ttl_s=5, margin_s=1)  # within the margin of expiry
    assert not may_run(100.0, 160.0, ttl_s=5, margin_s=1)  # woke up from a SIGSTOP
