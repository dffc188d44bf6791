"""One GPU's telemetry, from NVML on real GPUs or from the platform's state on simulated ones.

Simulated devices have no sensors, so their values are a documented model of what the platform
knows (docs/metrics.md), never presented as measurements: the series carry ``source="simulated"``.
A simulated GPU held by a running job reads 100 % busy with its whole framebuffer used; an idle
one 0 % and nothing used. Temperature and power follow utilisation linearly between an idle and
a full-load point of its model class.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024

# (idle W, full-load W) per model; others use DEFAULT_POWER. Board powers from the vendors'
# data sheets (SXM parts), so that simulated dashboards show plausible magnitudes.
POWER_W = {
    "H100": (70.0, 700.0), "H100-80G": (70.0, 700.0), "H200": (75.0, 700.0),
    "A100-80G": (55.0, 400.0), "A100-40G": (50.0, 400.0), "L40S": (35.0, 350.0),
    "B200": (120.0, 1000.0),
}
DEFAULT_POWER = (50.0, 300.0)
IDLE_TEMP_C, LOAD_TEMP_C = 32.0, 68.0


@dataclass(frozen=True)
class GpuSample:
    util_pct: float
    fb_used_mib: float
    temp_c: float
    power_w: float
    source: str  # "nvml" (measured) or "simulated" (modelled from the platform's state)


def simulated_sample(model: str, memory_mib: int, busy: bool) -> GpuSample:
    util = 100.0 if busy else 0.0
    idle_w, load_w = POWER_W.get(model, DEFAULT_POWER)
    share = util / 100.0
    return GpuSample(
        util_pct=util,
        fb_used_mib=float(memory_mib) if busy else 0.0,
        temp_c=IDLE_TEMP_C + (LOAD_TEMP_C - IDLE_TEMP_C) * share,
        power_w=idle_w + (load_w - idle_w) * share,
        source="simulated",
    )


class NvmlReader:
    """Reads the GPUs of this machine by UUID. NVML is initialised once, on first use; a GPU
    that does not answer is left out of the scrape rather than reported as zero."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self._ready = False

    def samples(self, uuids: Iterable[str]) -> dict[str, GpuSample]:
        nvml = self.nvml
        if not self._ready:
            try:
                nvml.nvmlInit()
            except nvml.NVMLError:
                return {}
            self._ready = True
        found: dict[str, GpuSample] = {}
        for uuid in uuids:
            with contextlib.suppress(nvml.NVMLError):
                found[uuid] = self._read(nvml.nvmlDeviceGetHandleByUUID(uuid))
        return found

    def _read(self, handle: Any) -> GpuSample:
        nvml = self.nvml
        util = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        used = float(nvml.nvmlDeviceGetMemoryInfo(handle).used) / MIB
        temp = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        power = float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0  # mW -> W
        return GpuSample(util, used, temp, power, "nvml")
