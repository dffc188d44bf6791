"""Restarting a job after a platform fault (pure): whether, after how long, and what the
tenant lost.

A job hit by a fault is requeued with the same checkpoint directory. Restarts back off
exponentially, and a job that keeps failing without progress gives up after ``budget``
restarts; any new checkpoint since the last restart is progress and resets the count, so a long
run that is hit now and then is never given up on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RestartPolicy:
    budget: int = 3  # restarts in a row without a new checkpoint before giving up
    backoff_base_s: float = 1.0  # the first restart waits this long, each next one twice more
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    delay_s: float
    message: str


def decide_restart(restarts_since_progress: int, policy: RestartPolicy) -> RestartDecision:
    if restarts_since_progress >= policy.budget:
        return RestartDecision(
            False, 0.0,
            f"restarted {restarts_since_progress} times without a new checkpoint; "
            "giving up (the restart budget resets whenever the job checkpoints)",
        )
    delay = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** restarts_since_progress)
    return RestartDecision(True, delay, f"restarting in {delay:g} s")


def lost_run_seconds(fault_at: datetime, attempt_started_at: datetime | None,
                     last_checkpoint_at: datetime | None) -> int:
    """Run time the fault threw away: since the last checkpoint if this attempt made one,
    else since the attempt started."""
    if attempt_started_at is None:
        return 0
    since = attempt_started_at
    if last_checkpoint_at is not None and last_checkpoint_at > since:
        since = last_checkpoint_at
    return max(0, int((fault_at - since).total_seconds()))
