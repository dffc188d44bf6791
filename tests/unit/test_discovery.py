"""Discovery: NVML through a fake ``pynvml`` module (the only boundary faked), simulation."""

# ruff: noqa: N802  (the fake keeps pynvml's camelCase function names)

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from gpucloud.core.errors import InvalidRequest
from gpucloud.engines import discovery
from gpucloud.engines.discovery import discover_nvml, local_nodes, simulated_nodes


class FakeNVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    name: str | bytes
    bus_id: str
    memory_bytes: int = 80 * 1024**3
    links: dict[int, str] = field(default_factory=dict)  # link -> remote bus id ("switch")
    broken: bool = False


class FakeNvml:
    """The subset of pynvml that discovery uses, over a list of fake GPUs (pynvml's names)."""

    NVMLError = FakeNVMLError
    NVML_NVLINK_MAX_LINKS = 18
    NVML_NVLINK_DEVICE_TYPE_SWITCH = 2

    def __init__(self, gpus: list[FakeGpu], init_fails: bool = False) -> None:
        self.gpus = gpus
        self.init_fails = init_fails
        self.initialized = False
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_fails:
            raise FakeNVMLError("Driver Not Loaded")
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if self.gpus[index].broken:
            raise FakeNVMLError("GPU is lost")
        return self.gpus[index]

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str | bytes:
        return gpu.name

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> Any:
        return SimpleNamespace(total=gpu.memory_bytes, used=0, free=gpu.memory_bytes)

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return f"GPU-fake-{gpu.bus_id}"

    def nvmlDeviceGetPciInfo(self, gpu: FakeGpu) -> Any:
        return SimpleNamespace(busId=gpu.bus_id.encode())

    def _link(self, gpu: FakeGpu, link: int) -> str:
        if link not in gpu.links:
            raise FakeNVMLError("Not Supported")
        return gpu.links[link]

    def nvmlDeviceGetNvLinkState(self, gpu: FakeGpu, link: int) -> int:
        self._link(gpu, link)
        return 1

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, gpu: FakeGpu, link: int) -> int:
        return 2 if self._link(gpu, link) == "switch" else 0

    def nvmlDeviceGetNvLinkRemotePciInfo(self, gpu: FakeGpu, link: int) -> Any:
        return SimpleNamespace(busId=self._link(gpu, link))


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeNvml) -> FakeNvml:
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_two_gpus_linked_by_nvlink(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(
        monkeypatch,
        FakeNvml(
            [
                # Remote ids use the short 4-digit domain: they must still map back.
                FakeGpu("NVIDIA H100 80GB HBM3", "00000000:18:00.0", links={0: "0000:2A:00.0"}),
                FakeGpu(b"NVIDIA H100 80GB HBM3", "00000000:2A:00.0", links={3: "0000:18:00.0"}),
            ]
        ),
    )
    devices = discover_nvml()
    assert [(d.index, d.model, d.memory_mib) for d in devices] == [
        (0, "H100", 81920),
        (1, "H100", 81920),
    ]
    assert devices[0].nvlink_peers == (1,)
    assert devices[1].nvlink_peers == (0,)
    assert devices[0].uuid == "GPU-fake-00000000:18:00.0"
    assert devices[0].pci_bus_id == "00000000:18:00.0"
    assert all(d.healthy and not d.simulated for d in devices)
    assert fake.shutdowns == 1


def test_nvswitch_links_make_all_switched_gpus_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        monkeypatch,
        FakeNvml(
            [
                FakeGpu("NVIDIA H100 80GB HBM3", f"00000000:{b:02X}:00.0", links={0: "switch"})
                for b in (0x18, 0x2A, 0x3A)
            ]
            + [FakeGpu("NVIDIA L40S", "00000000:9A:00.0", memory_bytes=48 * 1024**3)]
        ),
    )
    devices = discover_nvml()
    assert [d.nvlink_peers for d in devices] == [(1, 2), (0, 2), (0, 1), ()]
    assert devices[3].model == "L40S"


def test_unknown_model_keeps_a_sanitized_name(monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        monkeypatch,
        FakeNvml([FakeGpu("NVIDIA GeForce RTX 3090", "00000000:01:00.0", 24 * 1024**3)]),
    )
    (device,) = discover_nvml()
    assert device.model == "GeForce-RTX-3090"
    assert device.memory_mib == 24 * 1024
    assert device.nvlink_peers == ()


def test_unreadable_gpu_is_reported_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        monkeypatch,
        FakeNvml(
            [
                FakeGpu("NVIDIA A100-SXM4-80GB", "00000000:07:00.0"),
                FakeGpu("NVIDIA A100-SXM4-80GB", "00000000:0F:00.0", broken=True),
            ]
        ),
    )
    good, bad = discover_nvml()
    assert (good.index, good.model, good.healthy) == (0, "A100-80G", True)
    assert (bad.index, bad.healthy) == (1, False)


def test_nvml_init_failure_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(monkeypatch, FakeNvml([FakeGpu("NVIDIA H100", "0:1:0.0")], init_fails=True))
    assert discover_nvml() == []
    assert not fake.initialized


def test_missing_library_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert discover_nvml() == []


def test_simulated_nodes() -> None:
    nodes = simulated_nodes("8xH100, 2xL40S", cpu_milli=16000, memory_mib=65536)
    assert [n.id for n in nodes] == ["local-0", "local-1"]
    h100, l40s = nodes
    assert (h100.cpu_milli, h100.memory_mib) == (16000, 65536)
    assert dict(h100.labels) == {"simulated": "true"}
    assert [d.index for d in h100.devices] == list(range(8))
    assert all(
        d.model == "H100" and d.memory_mib == 80 * 1024 and d.simulated for d in h100.devices
    )
    assert h100.devices[0].nvlink_peers == (1, 2, 3, 4, 5, 6, 7)
    assert h100.devices[0].pci_bus_id == "00000000:18:00.0"
    assert h100.devices[2].pci_bus_id == "00000000:1A:00.0"
    assert all(d.nvlink_peers == () for d in l40s.devices)
    assert len({d.uuid for n in nodes for d in n.devices}) == 10
    # Deterministic: the same spec names the same devices after a restart.
    again = simulated_nodes("8xH100, 2xL40S", cpu_milli=1, memory_mib=1)
    assert [d.uuid for d in again[0].devices] == [d.uuid for d in h100.devices]
    assert h100.devices[0].uuid.startswith("GPU-")


@pytest.mark.parametrize("model", ["MI300X", "Ascend910B", "A100-40G"])
def test_fabric_linked_models_have_peers(model: str) -> None:
    (node,) = simulated_nodes(f"2x{model}", 1000, 1024)
    assert [d.nvlink_peers for d in node.devices] == [(1,), (0,)]


def test_simulated_nodes_rejects_bad_specs() -> None:
    with pytest.raises(InvalidRequest):
        simulated_nodes("8xB9000", 1000, 1024)


def test_host_resources_are_positive() -> None:
    cpu_milli, memory_mib = discovery.host_resources()
    assert cpu_milli >= 1000 and cpu_milli % 1000 == 0
    assert memory_mib > 0


def test_local_nodes_simulates_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeNvml([FakeGpu("NVIDIA H100", "00000000:18:00.0")]))
    nodes, note = local_nodes("4xA100-80G")
    assert [len(n.devices) for n in nodes] == [4]
    assert all(d.simulated for d in nodes[0].devices)
    assert "4xA100-80G" in note and "simulat" in note


def test_local_nodes_uses_real_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeNvml([FakeGpu("NVIDIA H100 PCIe", "00000000:18:00.0")]))
    nodes, note = local_nodes(None)
    assert [n.id for n in nodes] == ["local-0"]
    assert [(d.model, d.simulated) for d in nodes[0].devices] == [("H100", False)]
    assert "1xH100" in note


def test_local_nodes_falls_back_to_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeNvml([], init_fails=True))
    nodes, note = local_nodes(None)
    assert [len(n.devices) for n in nodes] == [8]
    assert all(d.simulated and d.model == "H100" for d in nodes[0].devices)
    assert note == "no GPU found by NVML: simulating 8xH100 (shown as simulated)"
