"""What an engine says about one launched run: plain data shared by engines and the core."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class RunPhase(StrEnum):
    PENDING = "PENDING"  # accepted by the engine, not running yet (e.g. Slurm still starting it)
    RUNNING = "RUNNING"
    EXITED = "EXITED"  # exit_code is set
    LOST = "LOST"  # the engine no longer knows it and has no exit status for it


@dataclass(frozen=True)
class RunStatus:
    phase: RunPhase
    exit_code: int | None = None
    message: str = ""
    # When the run really ended, if the engine knows: it may have ended while nobody watched
    # (the control plane was down), and the tenant must not pay for that gap.
    finished_at: datetime | None = None
    # Set when the run ended because of the platform (a node failed under it), not because of
    # the job: the job is not to blame, and the platform may restart it.
    platform_fault: bool = False


@dataclass(frozen=True)
class GangStatus:
    """What the replicas of one launch add up to, and whether the survivors must be stopped."""

    status: RunStatus
    tear_down: bool  # a replica ended badly while others still run: stop them


def combine(replicas: Sequence[RunStatus]) -> GangStatus:
    """A gang runs while any replica runs; it ended when all have, with the first failure's
    code (or 0). A replica that failed or was lost dooms the others: they cannot make progress
    without it, so they are torn down rather than left to hang on a collective."""
    failed = [r for r in replicas if r.phase is RunPhase.LOST or
              (r.phase is RunPhase.EXITED and r.exit_code != 0)]
    alive = [r for r in replicas if r.phase in (RunPhase.RUNNING, RunPhase.PENDING)]
    if alive:
        phase = RunPhase.RUNNING if any(r.phase is RunPhase.RUNNING for r in alive) else (
            RunPhase.PENDING)
        return GangStatus(RunStatus(phase), tear_down=bool(failed))
    lost = [r for r in replicas if r.phase is RunPhase.LOST]
    if lost and len(lost) == len(replicas):
        return GangStatus(lost[0], tear_down=False)
    # The first to fail caused the rest (which were torn down): report its code.
    first = min(failed, key=_end_order) if failed else replicas[0]
    ends = [r.finished_at for r in replicas if r.finished_at is not None]
    code = first.exit_code if first.phase is RunPhase.EXITED else None
    return GangStatus(
        RunStatus(
            RunPhase.EXITED if code is not None else RunPhase.LOST,
            exit_code=code,
            message=first.message,
            finished_at=max(ends) if ends else None,
            platform_fault=any(r.platform_fault for r in replicas),
        ),
        tear_down=False,
    )


def _end_order(run: RunStatus) -> tuple[int, datetime]:
    return (0, run.finished_at) if run.finished_at is not None else (1, datetime.max)
