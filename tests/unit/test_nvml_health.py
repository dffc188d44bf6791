"""The NVML health monitor and burn-in through a stand-in ``pynvml`` (the only boundary faked;
real GPUs are checked on a device machine), and the fault log they write to."""

# ruff: noqa: N802, N815  (the stand-in keeps pynvml's camelCase names)

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from gpucloud.core.faults import SignalKind
from gpucloud.engines.fault_log import FaultLog
from gpucloud.engines.nvml_health import NvmlHealthMonitor, nvml_burn_in

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeNVMLError(Exception):
    def __init__(self, value: int = 999) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class Gpu:
    index: int
    ecc: int = 0
    nvlink: int = 0
    temperature: int = 60
    pages_pending: bool = False
    power_mw: int = 300_000
    xids: list[int] = field(default_factory=list)


class FakeNvml:
    NVMLError = FakeNVMLError
    NVML_ERROR_TIMEOUT = 10
    NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC = 0, 1
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_TEMPERATURE_GPU = 0
    NVML_FEATURE_ENABLED = 1
    NVML_NVLINK_MAX_LINKS = 2
    nvmlEventTypeXidCriticalError = 8

    def __init__(self, gpus: list[Gpu]) -> None:
        self.gpus = gpus

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Gpu:
        return self.gpus[index]

    def nvmlDeviceGetIndex(self, gpu: Gpu) -> int:
        return gpu.index

    def nvmlEventSetCreate(self) -> str:
        return "events"

    def nvmlDeviceRegisterEvents(self, gpu: Gpu, kinds: int, events: str) -> None: ...

    def nvmlEventSetWait_v2(self, events: str, timeout_ms: int) -> SimpleNamespace:
        for gpu in self.gpus:
            if gpu.xids:
                return SimpleNamespace(device=gpu, eventData=gpu.xids.pop(0), eventType=8)
        raise FakeNVMLError(self.NVML_ERROR_TIMEOUT)

    def nvmlDeviceGetTotalEccErrors(self, gpu: Gpu, kind: int, counter: int) -> int:
        return gpu.ecc

    def nvmlDeviceGetNvLinkErrorCounter(self, gpu: Gpu, link: int, counter: int) -> int:
        return gpu.nvlink if (link, counter) == (0, 0) else 0

    def nvmlDeviceGetRetiredPagesPendingStatus(self, gpu: Gpu) -> int:
        return 1 if gpu.pages_pending else 0

    def nvmlDeviceGetTemperature(self, gpu: Gpu, sensor: int) -> int:
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, gpu: Gpu) -> int:
        return gpu.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: Gpu) -> int:
        return 700_000


def test_xids_and_rising_counters_become_signals_once(tmp_path: Path) -> None:
    gpus = [Gpu(0, ecc=2), Gpu(1)]
    nvml = FakeNvml(gpus)
    log = FaultLog(tmp_path / "faults.jsonl")
    monitor = NvmlHealthMonitor(nvml, "n0", log, lambda: T0)
    monitor.open()
    assert monitor.poll_once(0) == 0  # ECC 2 was there before we watched: not news
    gpus[1].xids.append(79)
    gpus[0].ecc = 3
    gpus[1].nvlink = 5
    gpus[1].temperature = 97
    gpus[0].pages_pending = True
    assert monitor.poll_once(0) == 5
    seen = {(s.kind, s.device_index, s.code) for s in log.after(0)}
    assert seen == {(SignalKind.XID, 1, 79), (SignalKind.ECC, 0, None),
                    (SignalKind.NVLINK, 1, None), (SignalKind.THERMAL, 1, 97),
                    (SignalKind.RETIRED_PAGES, 0, None)}
    assert monitor.poll_once(0) == 0  # conditions that last are reported once
    assert [s.seq for s in log.after(0)] == [1, 2, 3, 4, 5]
    # the log outlives the process, and a torn last line (a crash mid-write) is skipped
    with (tmp_path / "faults.jsonl").open("a") as handle:
        handle.write('{"seq": 6, "node"')
    again = FaultLog(tmp_path / "faults.jsonl")
    assert [s.seq for s in again.after(3)] == [4, 5]


def test_burn_in_passes_a_quiet_gpu_and_fails_a_bad_one() -> None:
    gpus = [Gpu(0), Gpu(1, pages_pending=True), Gpu(2, temperature=99)]
    nvml = FakeNvml(gpus)
    assert nvml_burn_in(nvml, 0, settle_s=0).passed
    assert "retired pages" in nvml_burn_in(nvml, 1, settle_s=0).detail
    assert not nvml_burn_in(nvml, 2, settle_s=0).passed
