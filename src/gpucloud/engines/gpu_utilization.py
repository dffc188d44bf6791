"""GPU utilisation of real devices from NVML, for idle reclamation of instances.

NVML's ``gpu`` utilisation is the percentage of the last sample period (1/6 s to 1 s, by
device) during which a kernel ran. An instance's value is the busiest of its GPUs: one busy
GPU means the instance is working. Simulated devices have no NVML; their value is reported
to the API (``POST /v1/instances/{id}/utilization``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


def read_utilization(nvml: Any, indexes: Sequence[int]) -> int | None:
    """The busiest of the GPUs at ``indexes`` (NVML's numbering), or None if NVML cannot say."""
    values = []
    for index in indexes:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            values.append(int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        except nvml.NVMLError as err:
            log.debug("GPU %s: no utilisation reading: %s", index, err)
    return max(values) if values else None


class NvmlUtilization:
    """Opens NVML on first use, once; where it cannot be opened, every reading is None (an
    instance is never reclaimed on a guess)."""

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._state = "unopened" if nvml is None else "open"
        self._lock = threading.Lock()

    def read(self, indexes: Sequence[int]) -> int | None:
        with self._lock:
            if self._state == "unopened":
                self._open()
            if self._state != "open":
                return None
        return read_utilization(self._nvml, indexes)

    def _open(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as err:  # no driver, no library: simply no readings
            log.warning("NVML is not available, GPU utilisation unknown: %s", err)
            self._state = "unavailable"
            return
        self._nvml, self._state = pynvml, "open"
