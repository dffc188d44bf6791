"""The catalog of accelerator models the platform knows.

``weight`` is a compute-unit weight relative to an A100 80G (dense BF16 throughput from the
vendors' public data sheets, rounded), used for prices and quotas. ``visible_env`` is the variable
that restricts a process to its assigned devices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from gpucloud.core.errors import InvalidRequest


class Vendor(StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    HUAWEI = "huawei"


VISIBLE_ENV = {
    Vendor.NVIDIA: "CUDA_VISIBLE_DEVICES",
    Vendor.AMD: "HIP_VISIBLE_DEVICES",
    Vendor.HUAWEI: "ASCEND_RT_VISIBLE_DEVICES",
}


@dataclass(frozen=True)
class AcceleratorModel:
    name: str  # canonical, as users type it: "H100", "A100-80G"
    vendor: Vendor
    memory_gib: int
    weight: float
    aliases: tuple[str, ...] = ()  # other spellings, e.g. what NVML reports

    @property
    def visible_env(self) -> str:
        return VISIBLE_ENV[self.vendor]


MODELS: tuple[AcceleratorModel, ...] = (
    AcceleratorModel(
        "H100",
        Vendor.NVIDIA,
        80,
        3.2,
        ("H100-80G", "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100"),
    ),
    AcceleratorModel("H800", Vendor.NVIDIA, 80, 3.2, ("H800-80G", "NVIDIA H800")),
    AcceleratorModel(
        "A100-80G", Vendor.NVIDIA, 80, 1.0, ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe")
    ),
    AcceleratorModel(
        "A100-40G",
        Vendor.NVIDIA,
        40,
        1.0,
        ("A100", "NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"),
    ),
    AcceleratorModel("A800", Vendor.NVIDIA, 80, 1.0, ("A800-80G", "NVIDIA A800-SXM4-80GB")),
    AcceleratorModel("L40S", Vendor.NVIDIA, 48, 1.2, ("NVIDIA L40S",)),
    AcceleratorModel(
        "RTX4090", Vendor.NVIDIA, 24, 0.6, ("RTX-4090", "4090", "NVIDIA GeForce RTX 4090")
    ),
    AcceleratorModel("MI300X", Vendor.AMD, 192, 4.2, ("AMD Instinct MI300X",)),
    AcceleratorModel("Ascend910B", Vendor.HUAWEI, 64, 1.1, ("910B", "Ascend-910B")),
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY: dict[str, AcceleratorModel] = {}
for _model in MODELS:
    for _spelling in (_model.name, *_model.aliases):
        _BY_KEY[_key(_spelling)] = _model


def find_model(name: str) -> AcceleratorModel | None:
    """Look a model up by any spelling, ignoring case, spaces and dashes."""
    return _BY_KEY.get(_key(name))


def resolve_model(name: str) -> AcceleratorModel:
    model = find_model(name)
    if model is None:
        known = ", ".join(m.name for m in MODELS)
        raise InvalidRequest(f"unknown GPU type {name!r}; known types: {known}", field="gpu_type")
    return model
