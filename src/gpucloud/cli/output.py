"""Generic presentation: consoles, JSON output, relative times, sizes and state colours."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic import BaseModel
from rich.console import Console
from rich.text import Text

from gpucloud.core.states import JobState

PIPE_WIDTH = 240  # piped output is for grep and files: do not truncate tables at 80 columns


def _width(stream: TextIO) -> int | None:
    if stream.isatty() or os.environ.get("COLUMNS"):
        return None  # Rich measures the terminal (or honours COLUMNS)
    return PIPE_WIDTH


console = Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))

STATE_STYLES = {
    JobState.PENDING: "dim",
    JobState.QUEUED: "yellow",
    JobState.SCHEDULED: "cyan",
    JobState.STARTING: "cyan",
    JobState.RUNNING: "bold green",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "bold red",
    JobState.CANCELLED: "magenta",
}


def print_json(data: Any) -> None:
    """JSON only, on stdout, without Rich (no colours or wrapping that would break parsers)."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def dump_all(models: Iterable[BaseModel]) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json") for m in models]


def state_text(state: str) -> Text:
    try:
        style = STATE_STYLES[JobState(state)]
    except ValueError:
        style = ""
    return Text(str(state), style=style)


def duration(seconds: float) -> str:
    """Compact human duration: 45s, 3m, 2h5m, 3d4h."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs and minutes < 10 else f"{minutes}m"
    return f"{secs}s"


def aware(at: datetime) -> datetime:
    """Times without a zone are UTC (what the server stores), so they can be compared."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def age(then: datetime | None, now: datetime | None = None) -> str:
    """How long ago, e.g. '3m'; '-' when unknown."""
    if then is None:
        return "-"
    return duration(((now or datetime.now(UTC)) - aware(then)).total_seconds())


def timestamp(at: datetime | None) -> str:
    """Local wall-clock time to the second; '-' when unknown."""
    if at is None:
        return "-"
    return aware(at).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def mib(value: int) -> str:
    """MiB as the user typed them: 16G, 512M, 1.5G."""
    if value >= 1024:
        gib = value / 1024
        return f"{int(gib)}G" if gib == int(gib) else f"{gib:.1f}G"
    return f"{value}M"


def cpus(value: float) -> str:
    return f"{value:g}"
