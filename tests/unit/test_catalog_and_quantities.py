from __future__ import annotations

import pytest

from gpucloud.core.catalog import MODELS, Vendor, find_model, resolve_model
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.quantities import parse_duration_s, parse_memory_mib, parse_simulated_gpus


def test_catalog_has_the_models_tenants_ask_for() -> None:
    names = {m.name for m in MODELS}
    assert {
        "H100",
        "H800",
        "A100-40G",
        "A100-80G",
        "A800",
        "L40S",
        "RTX4090",
        "MI300X",
        "Ascend910B",
    } <= names


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("h100", "H100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("a100-80g", "A100-80G"),
        ("A100 80G", "A100-80G"),
        ("rtx-4090", "RTX4090"),
        ("910B", "Ascend910B"),
    ],
)
def test_models_resolve_from_any_spelling(spelling: str, name: str) -> None:
    model = find_model(spelling)
    assert model is not None and model.name == name


def test_each_vendor_pins_with_its_own_variable() -> None:
    assert resolve_model("H100").visible_env == "CUDA_VISIBLE_DEVICES"
    assert resolve_model("MI300X").visible_env == "HIP_VISIBLE_DEVICES"
    assert resolve_model("Ascend910B").visible_env == "ASCEND_RT_VISIBLE_DEVICES"
    assert resolve_model("MI300X").vendor is Vendor.AMD


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(InvalidRequest, match=r"unknown GPU type 'B300'.*H100"):
        resolve_model("B300")


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("16G", 16384),
        ("16GiB", 16384),
        ("512M", 512),
        ("1.5g", 1536),
        ("2T", 2097152),
        (300, 300),
    ],
)
def test_memory_sizes(text: str | int, mib: int) -> None:
    assert parse_memory_mib(text) == mib


@pytest.mark.parametrize("bad", ["lots", "-1G", "0", "16X", ""])
def test_bad_memory_sizes_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_memory_mib(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 7200),
        ("30m", 1800),
        ("1h30m", 5400),
        ("90s", 90),
        ("45", 45),
        (10, 10),
        ("1d", 86400),
    ],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("bad", ["-5", "-5m", "0", "soon", "2h junk", "h"])
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_duration_s(bad)


def test_simulated_gpu_spec() -> None:
    groups = parse_simulated_gpus("8xH100, 4xA100-80G")
    assert [(n, m.name) for n, m in groups] == [(8, "H100"), (4, "A100-80G")]
    with pytest.raises(InvalidRequest):
        parse_simulated_gpus("eight H100")
    with pytest.raises(InvalidRequest):
        parse_simulated_gpus("0xH100")
