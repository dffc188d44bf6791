"""Which replica runs the controllers: a lease row with a fencing token, decided purely.

Every replica serves the API; only the holder of the ``controllers`` lease runs the reconcile
loops. The lease is a database row (holder, token, expires_at). A replica that finds it free or
expired takes it with ``token + 1``; the holder renews it well before it expires. Every
controller write transaction re-reads the row at its end and commits only if the token is still
the one this replica acquired, so an old leader that was paused past its lease (and replaced)
can never commit again: its token is stale. See docs/ha.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from gpucloud.core.errors import GpucloudError

CONTROLLERS = "controllers"  # the one lease today: all controllers move together
LEASE_TTL_S = 5.0  # a dead leader is replaced after at most this (plus one poll)
RENEW_EVERY_S = 1.0  # the holder renews this often; a follower polls this often
# The holder stops starting controller passes this long before its lease could expire, so a
# pass never begins on a lease that runs out in the middle of it (the commit check still holds).
SAFETY_MARGIN_S = 1.0


class LeadershipLost(GpucloudError):
    """A controller write was refused: this replica's fencing token is no longer current."""


class Step(enum.StrEnum):
    ACQUIRE = "acquire"  # free or expired: take it with token + 1
    RENEW = "renew"  # ours and live: push expires_at on
    FOLLOW = "follow"  # someone else's and live: wait


@dataclass(frozen=True)
class LeaseRow:
    name: str
    holder: str | None
    token: int
    expires_at: datetime


@dataclass(frozen=True)
class Held:
    """What this replica believes it holds: the token its writes must still match."""

    token: int
    expires_at: datetime


def decide(row: LeaseRow | None, now: datetime, me: str, held: Held | None,
           holder_gone: bool = False) -> Step:
    """The next step for replica ``me`` given the row as read inside the transaction.

    ``holder_gone``: the holder is a process of this machine that no longer exists (a crash,
    restarted by systemd): taken at once instead of after the TTL. A dead process cannot
    write, and a stopped one is not gone, so this never shortens a live holder's lease."""
    if row is None or row.holder is None or row.expires_at <= now:
        return Step.ACQUIRE
    if holder_gone and row.holder != me:
        return Step.ACQUIRE
    if row.holder == me and held is not None and row.token == held.token:
        return Step.RENEW
    return Step.FOLLOW


def next_token(row: LeaseRow | None) -> int:
    """Tokens only grow: every acquisition, even by the same replica, fences all earlier ones."""
    return 1 if row is None else row.token + 1


def expiry(now: datetime, ttl_s: float = LEASE_TTL_S) -> datetime:
    return now + timedelta(seconds=ttl_s)


def may_run(renewed_at_mono: float | None, now_mono: float,
            ttl_s: float = LEASE_TTL_S, margin_s: float = SAFETY_MARGIN_S) -> bool:
    """Whether a controller pass may start: the lease was renewed (its transaction *began*)
    less than ``ttl - margin`` ago on this process's monotonic clock. A process stopped
    (SIGSTOP, a long GC, a frozen VM) wakes up past this and runs nothing until it renews."""
    return renewed_at_mono is not None and now_mono - renewed_at_mono < ttl_s - margin_s
