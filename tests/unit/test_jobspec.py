from __future__ import annotations

import pytest

from gpucloud.core.errors import InvalidRequest
from gpucloud.core.jobspec import parse_job_spec


def test_task_file_spellings_are_normalised() -> None:
    spec = parse_job_spec(
        {
            "command": "python train.py",
            "gpus": 2,
            "gpu_type": "h100",
            "memory": "16G",
            "max_duration": "2h",
            "cpus": 0.5,
        }
    )
    assert spec.command == ["/bin/sh", "-c", "python train.py"]
    assert (spec.gpu_type, spec.memory_mib, spec.max_duration_s, spec.cpu_milli) == (
        "H100",
        16384,
        7200,
        500,
    )


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"command": []}, "command"),
        ({"command": ["x"], "gpus": -1}, "gpus"),
        ({"command": ["x"], "gpus": 2, "gpu_type": "B300"}, "unknown GPU type"),
        ({"command": ["x"], "max_duration": "-5"}, "max_duration"),
        ({"command": ["x"], "memory": "lots"}, "memory"),
        ({"command": ["x"], "env": {"GPUCLOUD_JOB_ID": "x"}}, "set by gpucloud"),
        ({"command": ["x"], "env": {"CUDA_VISIBLE_DEVICES": "0"}}, "set by gpucloud"),
        ({"command": ["x"], "env": {"1BAD": "x"}}, "not a valid variable"),
        ({"command": ["x"], "name": "Bad Name"}, "name"),
        ({"command": ["x"], "gpu_type": "H100"}, "gpus is 0"),
        ({"command": ["x"], "colour": "red"}, "colour"),
        ({"command": ["x"], "cpus": 0.0001}, "cpus"),
    ],
)
def test_bad_requests_say_what_is_wrong(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_job_spec(data)
    assert fragment in str(info.value)


def test_defaults_are_a_small_cpu_job() -> None:
    spec = parse_job_spec({"command": ["true"]})
    assert (spec.gpus, spec.cpu_milli, spec.memory_mib, spec.max_duration_s) == (
        0,
        1000,
        1024,
        None,
    )
