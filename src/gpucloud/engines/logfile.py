"""Reading a run's output file, and following it until the run ends (every engine's logs)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

CHUNK = 64 * 1024
POLL_S = 0.2


def read_output(path: Path, offset: int, follow: bool, ended: Callable[[], bool]) -> Iterator[
        bytes]:
    """The file from byte ``offset``; with ``follow``, until ``ended()`` says the writer is
    done. "Ended" is decided before each read, so what was written just before the end is
    still read. A file not created yet reads as empty (the run may not have started)."""
    handle = None
    try:
        while True:
            finished = not follow or ended()
            if handle is None:
                try:
                    handle = path.open("rb")
                except FileNotFoundError:
                    handle = None
                else:
                    try:
                        handle.seek(offset)
                    except (OSError, OverflowError, ValueError):
                        # Past what this file system can hold: nothing is there, nor ever will
                        # be (was a 500 mid-stream: found by schemathesis).
                        return
            if handle is not None:
                while chunk := handle.read(CHUNK):
                    yield chunk
            if finished:
                return
            time.sleep(POLL_S)
    finally:
        if handle is not None:
            handle.close()
