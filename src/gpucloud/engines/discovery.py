"""Accelerator discovery for the local engine: real GPUs through NVML, or simulated ones.

``gpucloud up`` calls :func:`local_nodes`: real devices when NVML finds some, otherwise (or when
asked) simulated devices that are clearly marked as such, so the whole platform can be tried on a
laptop. Only :func:`_read_nvml` talks to ``pynvml``; tests replace that module at the boundary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpucloud.core.catalog import find_model
from gpucloud.core.quantities import parse_simulated_gpus
from gpucloud.engines.base import DeviceReport, NodeReport

log = logging.getLogger(__name__)

# Models whose devices in one box are all linked by a fast fabric (NVLink/NVSwitch, AMD Infinity
# Fabric, Huawei HCCS). The scheduler prefers such peers for multi-GPU placements.
LINKED_MODELS = frozenset({"H100", "H800", "A100-80G", "A100-40G", "A800", "MI300X", "Ascend910B"})

DEFAULT_SIMULATION = "8xH100"


@dataclass
class _RawDevice:
    """What NVML said about one device, before it is mapped onto the catalog."""

    index: int
    name: str = ""
    memory_bytes: int = 0
    uuid: str = ""
    bus_id: str = ""
    link_bus_ids: list[str] = field(default_factory=list)  # remote ends of active NVLinks
    on_switch: bool = False  # at least one active NVLink goes to an NVSwitch
    error: str = ""  # set when the device could not be read: reported unhealthy


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _read_nvml(nvml: Any) -> list[_RawDevice]:
    """Every pynvml call lives here. NVMLError from init/count propagates (means "no GPUs")."""
    nvml.nvmlInit()
    try:
        devices: list[_RawDevice] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            raw = _RawDevice(index=index)
            devices.append(raw)
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                raw.name = _text(nvml.nvmlDeviceGetName(handle))
                raw.memory_bytes = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
                raw.uuid = _text(nvml.nvmlDeviceGetUUID(handle))
                raw.bus_id = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
            except nvml.NVMLError as exc:  # e.g. a GPU fallen off the bus: keep it, unhealthy
                raw.error = str(exc) or type(exc).__name__
                continue
            remote_type = getattr(nvml, "nvmlDeviceGetNvLinkRemoteDeviceType", None)
            switch_type = getattr(nvml, "NVML_NVLINK_DEVICE_TYPE_SWITCH", 2)
            for link in range(int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18))):
                try:  # links that do not exist or are down raise: they just are not peers
                    if not nvml.nvmlDeviceGetNvLinkState(handle, link):
                        continue
                    if remote_type is not None and remote_type(handle, link) == switch_type:
                        raw.on_switch = True
                        continue
                    remote = nvml.nvmlDeviceGetNvLinkRemotePciInfo(handle, link)
                    raw.link_bus_ids.append(_text(remote.busId))
                except nvml.NVMLError:
                    continue
        return devices
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def _bus_key(bus_id: str) -> str:
    """'00000000:18:00.0' and '0000:18:00.0' name the same device: compare numerically."""
    match = re.fullmatch(r"\s*([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-7])\s*", bus_id)
    if not match:
        return bus_id.strip().lower()
    domain, bus, dev, fn = (int(part, 16) for part in match.groups())
    return f"{domain:08x}:{bus:02x}:{dev:02x}.{fn}"


def _model_name(raw_name: str) -> str:
    """Catalog name when known; otherwise the NVML name, minus the vendor, as one token."""
    model = find_model(raw_name)
    if model is not None:
        return model.name
    name = re.sub(r"^(NVIDIA|AMD)\s+", "", raw_name.strip(), flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-") or "unknown"


def _to_reports(raws: list[_RawDevice]) -> list[DeviceReport]:
    by_bus = {_bus_key(r.bus_id): r.index for r in raws if r.bus_id and not r.error}
    switched = {r.index for r in raws if r.on_switch and not r.error}
    reports = []
    for raw in raws:
        if raw.error:
            log.warning("GPU %d could not be read through NVML: %s", raw.index, raw.error)
            reports.append(
                DeviceReport(
                    index=raw.index,
                    model=_model_name(raw.name) if raw.name else "unknown",
                    memory_mib=raw.memory_bytes // (1024 * 1024),
                    uuid=raw.uuid or f"unreadable-{raw.index}",
                    pci_bus_id=raw.bus_id,
                    healthy=False,
                )
            )
            continue
        peers = {by_bus[k] for k in map(_bus_key, raw.link_bus_ids) if k in by_bus}
        if raw.index in switched:  # NVSwitch fabric: every switched GPU reaches every other
            peers |= switched
        peers.discard(raw.index)
        reports.append(
            DeviceReport(
                index=raw.index,
                model=_model_name(raw.name),
                memory_mib=raw.memory_bytes // (1024 * 1024),
                uuid=raw.uuid,
                pci_bus_id=raw.bus_id,
                nvlink_peers=tuple(sorted(peers)),
                healthy=True,
                simulated=False,
            )
        )
    return reports


def discover_nvml() -> list[DeviceReport]:
    """The GPUs NVML sees on this machine; [] when there is no library, driver or GPU."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        raws = _read_nvml(pynvml)
    except (pynvml.NVMLError, OSError) as exc:
        log.info("NVML unavailable: %s", exc)
        return []
    return _to_reports(raws)


def simulated_nodes(spec: str, cpu_milli: int, memory_mib: int) -> list[NodeReport]:
    """One simulated node per group of ``spec`` ('8xH100,4xA100-80G'); all share the host."""
    nodes = []
    for number, (count, model) in enumerate(parse_simulated_gpus(spec)):
        node_id = f"local-{number}"
        linked = model.name in LINKED_MODELS
        devices = tuple(
            DeviceReport(
                index=index,
                model=model.name,
                memory_mib=model.memory_gib * 1024,
                uuid="GPU-"
                + str(uuid.uuid5(uuid.NAMESPACE_URL, f"gpucloud-sim/{node_id}/{index}")),
                pci_bus_id=f"00000000:{0x18 + index:02X}:00.0",
                nvlink_peers=tuple(i for i in range(count) if i != index) if linked else (),
                simulated=True,
            )
            for index in range(count)
        )
        nodes.append(
            NodeReport(
                id=node_id,
                cpu_milli=cpu_milli,
                memory_mib=memory_mib,
                devices=devices,
                labels={"simulated": "true"},
            )
        )
    return nodes


def host_resources() -> tuple[int, int]:
    """(CPU in millicores, memory in MiB) this process can use on this host."""
    try:
        cpus = len(os.sched_getaffinity(0))  # respects cpusets (containers, taskset)
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    memory_mib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mib = int(line.split()[1]) // 1024  # the value is in kB
                break
    except (OSError, ValueError, IndexError):
        pass
    if memory_mib <= 0:
        try:
            memory_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
        except (AttributeError, ValueError, OSError):
            memory_mib = 1024
    return cpus * 1000, memory_mib


def _summary(devices: tuple[DeviceReport, ...] | list[DeviceReport]) -> str:
    counts = Counter(d.model for d in devices)
    return ",".join(f"{n}x{model}" for model, n in counts.items())


def local_nodes(simulate: str | None) -> tuple[list[NodeReport], str]:
    """What ``gpucloud up`` runs on, and a one-line note saying why.

    ``simulate`` (e.g. '8xH100') forces simulated nodes; otherwise real GPUs found by NVML make
    one real node, and with none found the platform simulates 8xH100 so it stays usable.
    """
    cpu_milli, memory_mib = host_resources()
    if simulate is not None:
        nodes = simulated_nodes(simulate, cpu_milli, memory_mib)
        shown = ",".join(_summary(n.devices) for n in nodes)
        return nodes, f"simulating {shown} as requested (shown as simulated)"
    devices = discover_nvml()
    if devices:
        node = NodeReport(
            id="local-0",
            cpu_milli=cpu_milli,
            memory_mib=memory_mib,
            devices=tuple(devices),
            labels={"simulated": "false"},
        )
        return [node], f"found {len(devices)} GPU(s) by NVML: {_summary(devices)}"
    nodes = simulated_nodes(DEFAULT_SIMULATION, cpu_milli, memory_mib)
    return nodes, f"no GPU found by NVML: simulating {DEFAULT_SIMULATION} (shown as simulated)"
