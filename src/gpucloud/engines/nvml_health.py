"""Health signals from real NVIDIA GPUs through NVML, and the NVML burn-in check.

The monitor waits on NVML's critical-Xid event set (delivered where the driver supports it)
and, between waits, reads the counters that rise before or without an Xid: uncorrectable ECC
errors (volatile and aggregate), retired pages pending a reset, NVLink error counters,
temperature and power against their limits. A rise becomes one signal in the engine's fault
log. Only this module talks to ``pynvml``; tests hand it a stand-in module at that boundary.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gpucloud.core.faults import SignalKind
from gpucloud.engines.base import BurnInResult
from gpucloud.engines.fault_log import FaultLog

log = logging.getLogger(__name__)

NVLINK_COUNTERS = 4  # DL replay, DL recovery, DL CRC flit, DL CRC data


@dataclass(frozen=True)
class Limits:
    temperature_c: int = 90  # above: a thermal signal (the driver slows down near 85-90 C)
    power_over_limit: float = 1.05  # above this share of the enforced power limit


@dataclass
class _Seen:
    """Counter values already reported, so only rises become signals."""

    ecc: dict[int, int] = field(default_factory=dict)
    nvlink: dict[int, int] = field(default_factory=dict)
    pending_pages: set[int] = field(default_factory=set)
    hot: set[int] = field(default_factory=set)


def read_ecc(nvml: Any, handle: Any) -> int:
    """Uncorrectable ECC errors, the larger of the volatile and aggregate counts."""
    total = 0
    for counter in (nvml.NVML_VOLATILE_ECC, nvml.NVML_AGGREGATE_ECC):
        with contextlib.suppress(nvml.NVMLError):  # ECC off, or not supported
            total = max(total, int(nvml.nvmlDeviceGetTotalEccErrors(
                handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, counter)))
    return total


def read_nvlink_errors(nvml: Any, handle: Any) -> int:
    total = 0
    for link in range(int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18))):
        for counter in range(NVLINK_COUNTERS):
            with contextlib.suppress(nvml.NVMLError):  # links that do not exist raise
                total += int(nvml.nvmlDeviceGetNvLinkErrorCounter(handle, link, counter))
    return total


def read_pages_pending(nvml: Any, handle: Any) -> bool:
    try:
        status = nvml.nvmlDeviceGetRetiredPagesPendingStatus(handle)
    except nvml.NVMLError:
        return False
    return bool(status == getattr(nvml, "NVML_FEATURE_ENABLED", 1))


def read_thermal(nvml: Any, handle: Any, limits: Limits) -> tuple[int, bool]:
    """Temperature in C, and whether power draw is over its enforced limit."""
    temperature, over = 0, False
    with contextlib.suppress(nvml.NVMLError):
        temperature = int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
    with contextlib.suppress(nvml.NVMLError):
        usage = nvml.nvmlDeviceGetPowerUsage(handle)
        limit = nvml.nvmlDeviceGetEnforcedPowerLimit(handle)
        over = limit > 0 and usage > limit * limits.power_over_limit
    return temperature, over


class NvmlHealthMonitor:
    def __init__(self, nvml: Any, node_id: str, log_: FaultLog,
                 now: Callable[[], datetime], limits: Limits = Limits()) -> None:
        self.nvml = nvml
        self.node_id = node_id
        self.log = log_
        self.now = now
        self.limits = limits
        self._seen = _Seen()
        self._events: Any = None
        self._stop = threading.Event()

    def open(self) -> None:
        """Register for critical Xid events on every GPU; counters start from their values now
        (what happened before we watched is not news)."""
        nvml = self.nvml
        nvml.nvmlInit()
        try:
            self._events = nvml.nvmlEventSetCreate()
            for index, handle in self._handles():
                with contextlib.suppress(nvml.NVMLError):  # not every GPU delivers Xid events
                    nvml.nvmlDeviceRegisterEvents(
                        handle, nvml.nvmlEventTypeXidCriticalError, self._events)
                self._seen.ecc[index] = read_ecc(nvml, handle)
                self._seen.nvlink[index] = read_nvlink_errors(nvml, handle)
        except nvml.NVMLError:
            self._events = None
            raise

    def _handles(self) -> list[tuple[int, Any]]:
        nvml = self.nvml
        return [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(nvml.nvmlDeviceGetCount())]

    def poll_once(self, wait_ms: int = 1000) -> int:
        """Wait up to ``wait_ms`` for an Xid, then read the counters; returns signals added."""
        added = self._wait_for_xid(wait_ms)
        for index, handle in self._handles():
            added += self._check_counters(index, handle)
        return added

    def _wait_for_xid(self, wait_ms: int) -> int:
        nvml = self.nvml
        if self._events is None:
            return 0
        try:
            event = nvml.nvmlEventSetWait_v2(self._events, wait_ms)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) != getattr(nvml, "NVML_ERROR_TIMEOUT", 10):
                log.warning("NVML event wait failed: %s", exc)
            return 0
        index = nvml.nvmlDeviceGetIndex(event.device)
        self.log.append(self.node_id, SignalKind.XID, self.now(), index, int(event.eventData),
                        "reported by NVML")
        return 1

    def _check_counters(self, index: int, handle: Any) -> int:
        added = 0
        nvml = self.nvml
        ecc = read_ecc(nvml, handle)
        if ecc > self._seen.ecc.get(index, 0):
            self.log.append(self.node_id, SignalKind.ECC, self.now(), index, None,
                            f"uncorrectable ECC errors rose to {ecc}")
            added += 1
        self._seen.ecc[index] = ecc
        links = read_nvlink_errors(nvml, handle)
        if links > self._seen.nvlink.get(index, 0):
            self.log.append(self.node_id, SignalKind.NVLINK, self.now(), index, None,
                            f"NVLink error counters rose to {links}")
            added += 1
        self._seen.nvlink[index] = links
        added += self._edge(index, read_pages_pending(nvml, handle), self._seen.pending_pages,
                            SignalKind.RETIRED_PAGES, None, "retired pages pending a GPU reset")
        temperature, over_power = read_thermal(nvml, handle, self.limits)
        hot = temperature > self.limits.temperature_c or over_power
        added += self._edge(index, hot, self._seen.hot, SignalKind.THERMAL, temperature,
                            f"{temperature} C" + (", over its power limit" if over_power else ""))
        return added

    def _edge(self, index: int, now_on: bool, seen: set[int], kind: SignalKind,
              code: int | None, detail: str) -> int:
        """Report a condition when it starts, not on every poll while it lasts."""
        if now_on and index not in seen:
            seen.add(index)
            self.log.append(self.node_id, kind, self.now(), index, code, detail)
            return 1
        if not now_on:
            seen.discard(index)
        return 0

    def run(self) -> None:
        """Poll until ``stop``; a failing poll is logged and retried, never fatal."""
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("NVML health poll failed")
                self._stop.wait(5)

    def start(self) -> None:
        self.open()
        threading.Thread(target=self.run, name="gpucloud-nvml-health", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def nvml_burn_in(nvml: Any, index: int, limits: Limits = Limits(),
                 settle_s: float = 1.0) -> BurnInResult:
    """A short check of one GPU before it returns: NVML can reach it, it reports sane
    temperature and no retired pages pending, and its ECC counters do not rise while a
    second passes. (A compute check needs a CUDA runtime; operators who want one add it to
    their engine; the NVML part catches a GPU that fell off the bus or keeps erroring.)"""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return BurnInResult(False, f"NVML unavailable: {exc}")
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        before = read_ecc(nvml, handle)
        threading.Event().wait(settle_s)
        after = read_ecc(nvml, handle)
        temperature, over_power = read_thermal(nvml, handle, limits)
        if after > before:
            return BurnInResult(False, f"uncorrectable ECC errors rose from {before} to {after}")
        if read_pages_pending(nvml, handle):
            return BurnInResult(False, "retired pages pending: the GPU needs a reset")
        if temperature > limits.temperature_c or over_power:
            return BurnInResult(False, f"too hot ({temperature} C) or over its power limit")
        return BurnInResult(True, f"NVML check passed ({temperature} C, ECC {after})")
    except nvml.NVMLError as exc:
        return BurnInResult(False, f"GPU {index} unreachable through NVML: {exc}")
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
