"""What the service router saw, for the autoscaler and for draining: requests started, requests
in flight (per service and per replica), requests waiting for a first replica.

In-process and in memory: the router of this API process counts, the service controller of the
same process reads. With several API replicas each router counts only its own traffic (see
docs/services.md); a restart loses the counts, and the controller then holds its replicas
until a full stabilisation window has been observed again.

Cumulative readings (totals and an integral of the in-flight count over time), so any reader
computes its own rates over its own intervals without resetting anything.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reading:
    at_s: float
    started: int  # requests started since the process began
    busy_s: float  # the integral of requests in flight (those waiting included) over time
    waiting: int  # requests waiting for a first replica now
    last_request_s: float | None


@dataclass
class _Counts:
    started: int = 0
    in_flight: int = 0
    waiting: int = 0
    busy_s: float = 0.0
    changed_s: float = 0.0
    last_request_s: float | None = None


@dataclass
class ServiceTraffic:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _services: dict[str, _Counts] = field(default_factory=lambda: defaultdict(_Counts))
    _replicas: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def _advance(self, counts: _Counts, now_s: float) -> None:
        if counts.changed_s:
            counts.busy_s += counts.in_flight * max(0.0, now_s - counts.changed_s)
        counts.changed_s = now_s

    def arrived(self, service_id: str, now_s: float) -> None:
        """A request came in (it counts as in flight until ``finished``)."""
        with self._lock:
            counts = self._services[service_id]
            self._advance(counts, now_s)
            counts.started += 1
            counts.in_flight += 1
            counts.last_request_s = now_s

    def finished(self, service_id: str, now_s: float) -> None:
        with self._lock:
            counts = self._services[service_id]
            self._advance(counts, now_s)
            counts.in_flight = max(0, counts.in_flight - 1)

    def waiting(self, service_id: str, delta: int, now_s: float) -> None:
        """A request began (+1) or stopped (-1) waiting for a replica to become READY."""
        with self._lock:
            counts = self._services[service_id]
            self._advance(counts, now_s)
            counts.waiting = max(0, counts.waiting + delta)

    def to_replica(self, replica_id: str, delta: int) -> None:
        with self._lock:
            self._replicas[replica_id] = max(0, self._replicas[replica_id] + delta)

    def outstanding(self, replica_id: str) -> int:
        """Requests in flight to one replica (least-outstanding routing, draining)."""
        return self._replicas.get(replica_id, 0)

    def reading(self, service_id: str, now_s: float) -> Reading:
        with self._lock:
            counts = self._services[service_id]
            self._advance(counts, now_s)
            return Reading(now_s, counts.started, counts.busy_s, counts.waiting,
                           counts.last_request_s)


TRAFFIC = ServiceTraffic()  # this process's router and controller share it
