"""When the launcher last saw each launched allocation running: the bound of what may be
charged while it runs.

Metering charges a running allocation for the seconds it has *seen* it run, never up to "now":
a run that ended after the engine was last asked (mid-pass, or while the control plane was
slow) must not be charged past its real end, which the launcher records only at its next look,
and a second charged cannot be given back exactly. So the launcher notes the moment it asked
the engine for every run the engine then reported running, and uses that moment as the earliest
possible end when the engine's own end time is earlier (the platform saw it alive then).

In memory and per process: only the leader's controllers use it, and after a start or a
failover the launcher's first look, earlier in the same pass than metering, fills it again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime


class SeenRunning:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[str, datetime] = {}

    def observed(self, running: Mapping[str, datetime], watched: Iterable[str]) -> None:
        """One look at the engine: ``running`` were reported running when it was asked;
        ``watched`` is every allocation it was asked about (the others are no longer active,
        and forgotten). A watched allocation that did not run keeps its last sighting."""
        keep = set(watched)
        with self._lock:
            self._at = {a: t for a, t in self._at.items() if a in keep} | dict(running)

    def until(self, allocation_id: str) -> datetime | None:
        with self._lock:
            return self._at.get(allocation_id)
