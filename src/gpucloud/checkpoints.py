"""The checkpoint protocol between a job and the platform.

A job writes its checkpoints under ``$GPUCLOUD_CHECKPOINT_DIR`` (the same directory on every
restart) and then calls :func:`checkpoint_done` with the step it saved. That writes one small
file, ``.gpucloud/progress.json``, atomically, so the job needs neither a token nor the network;
the platform watches it. A job restarted after a fault finds its checkpoints where it left
them and resumes after the last step it reported; the platform credits the time since then.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PROGRESS_FILE = Path(".gpucloud") / "progress.json"


@dataclass(frozen=True)
class Progress:
    step: int
    at: datetime


def checkpoint_done(step: int, checkpoint_dir: str | os.PathLike[str] | None = None) -> None:
    """Tell the platform that the checkpoint of ``step`` is safely written. Call it after the
    checkpoint files are complete (renamed into place), never before."""
    if step < 0:
        raise ValueError("step must be >= 0")
    base = checkpoint_dir or os.environ.get("GPUCLOUD_CHECKPOINT_DIR")
    if not base:
        raise RuntimeError("GPUCLOUD_CHECKPOINT_DIR is not set: is this running under gpucloud?")
    path = Path(base) / PROGRESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"step": step, "at": datetime.now(UTC).isoformat()}))
    tmp.replace(path)


def read_progress(checkpoint_dir: str | os.PathLike[str]) -> Progress | None:
    """The last checkpoint a job reported, or None (none yet, or unreadable)."""
    try:
        data = json.loads((Path(checkpoint_dir) / PROGRESS_FILE).read_text())
        return Progress(int(data["step"]), datetime.fromisoformat(str(data["at"])))
    except (OSError, ValueError, KeyError, TypeError):
        return None
