"""The local engine's nodes and their health: what ``nodes()`` reports (drains and injected
heartbeat losses applied), the fault log (NVML's signals on real GPUs, drills' on simulated
ones), and the burn-in check."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpucloud.core.errors import EngineError
from gpucloud.core.faults import FaultSignal, SignalKind
from gpucloud.engines.base import BurnInResult, NodeReport
from gpucloud.engines.fault_log import FaultLog
from gpucloud.engines.nvml_health import NvmlHealthMonitor, nvml_burn_in


class LocalFleet:
    def __init__(self, nodes: list[NodeReport], data_dir: Path) -> None:
        self._nodes = list(nodes)
        self._lock = threading.Lock()
        self._drained: dict[str, str] = {}
        self._silent_until: dict[str, float] = {}  # node -> when its injected silence ends
        self._faults = FaultLog(data_dir / "faults.jsonl")
        self._nvml: Any = None

    def nodes(self) -> list[NodeReport]:
        now = time.monotonic()
        with self._lock:
            return [
                replace(n, drained=True, drain_reason=self._drained[n.id])
                if n.id in self._drained else n
                for n in self._nodes
                if self._silent_until.get(n.id, 0.0) <= now  # an injected heartbeat loss
            ]

    def drain(self, node_id: str, reason: str) -> None:
        """Nothing to tell a local machine: gpucloud alone places work here. Reported back so
        that the node's state reads the same as on engines that do keep one."""
        with self._lock:
            self._drained[node_id] = reason

    def resume(self, node_id: str) -> None:
        with self._lock:
            self._drained.pop(node_id, None)

    def set_device_health(self, node_id: str, index: int, healthy: bool) -> None:
        """Mark one simulated device (un)healthy in the reports."""
        with self._lock:
            for n, node in enumerate(self._nodes):
                if node.id == node_id and any(d.index == index for d in node.devices):
                    devices = tuple(replace(d, healthy=healthy) if d.index == index else d
                                    for d in node.devices)
                    self._nodes[n] = replace(node, devices=devices)
                    return
        raise EngineError(f"node {node_id!r} has no device {index}")

    def faults(self, after: int) -> list[FaultSignal]:
        return self._faults.after(after)

    def watch_nvml(self, nvml: Any) -> None:
        """Report real GPUs' Xid events and error counters (when NVML found them)."""
        for node in self._nodes:
            if any(not d.simulated for d in node.devices):
                monitor = NvmlHealthMonitor(nvml, node.id, self._faults,
                                            lambda: datetime.now(UTC))
                monitor.start()
                self._nvml = nvml

    def inject_fault(self, node_id: str, kind: SignalKind, device_index: int | None,
                     code: int | None, duration_s: float) -> None:
        """A fault on a simulated node, through the same log as NVML's signals; a heartbeat
        loss silences the node's reports for ``duration_s`` instead (the platform notices
        the silence itself)."""
        node = self._node(node_id)
        if node is None:
            raise EngineError(f"unknown node {node_id!r}")
        if any(not d.simulated for d in node.devices):
            raise EngineError(f"node {node_id} has real GPUs: their faults come from NVML")
        if device_index is not None and all(d.index != device_index for d in node.devices):
            raise EngineError(f"node {node_id} has no GPU {device_index}")
        if kind is SignalKind.HEARTBEAT_LOSS:
            with self._lock:
                self._silent_until[node_id] = time.monotonic() + duration_s
            return
        self._faults.append(node_id, kind, datetime.now(UTC), device_index, code, "injected")

    def burn_in(self, node_id: str, device_index: int | None) -> BurnInResult:
        node = self._node(node_id)
        if node is None:
            return BurnInResult(False, f"unknown node {node_id!r}")
        if self._nvml is None:
            return BurnInResult(True, "no real GPUs to check")
        indexes = [d.index for d in node.devices if device_index in (None, d.index)]
        for index in indexes:
            result = nvml_burn_in(self._nvml, index)
            if not result.passed:
                return result
        return BurnInResult(True, f"NVML check passed on {len(indexes)} GPU(s)")

    def _node(self, node_id: str) -> NodeReport | None:
        return next((n for n in self._nodes if n.id == node_id), None)
