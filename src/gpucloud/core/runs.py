"""What an engine says about one launched run: plain data shared by engines and the core."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class RunPhase(StrEnum):
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
