"""Task files and run flags: shapes, clear errors with positions, and flag precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpucloud.cli.errors import InputError
from gpucloud.cli.taskfile import (
    TASK_KEYS,
    build_spec,
    load_task_file,
    merge_request,
    parse_env_flags,
    parse_task_text,
)

NO_FLAGS: dict[str, object] = {
    "gpus": None,
    "gpu_type": None,
    "cpus": None,
    "memory": None,
    "name": None,
    "max_duration": None,
    "priority": None,
}
VALID = """\
name: train-llm
gpus: 4
gpu_type: h100
cpus: 0.5
memory: 16G
max_duration: 2h
priority: 5
env:
  SEED: 1
  DEBUG: true
  MODE: fast
command: python train.py --epochs 3
"""


def write(tmp_path: Path, text: str, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_valid_file_becomes_a_normalised_spec(tmp_path: Path) -> None:
    spec = build_spec(write(tmp_path, VALID), NO_FLAGS, [], [])
    assert spec.name == "train-llm"
    assert (spec.gpus, spec.gpu_type, spec.cpus, spec.priority) == (4, "H100", 0.5, 5)
    assert (spec.memory_mib, spec.max_duration_s) == (16384, 7200)
    assert spec.env == {"SEED": "1", "DEBUG": "true", "MODE": "fast"}
    assert spec.command == ["/bin/sh", "-c", "python train.py --epochs 3"]


def test_a_command_list_keeps_its_arguments(tmp_path: Path) -> None:
    path = write(tmp_path, "command: [sleep, 30]\n")
    assert build_spec(path, NO_FLAGS, [], []).command == ["sleep", "30"]


def test_malformed_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "gpus: 4\ncpus: 1\nenv: {A: 1\ncommand: x\n", "broken.yaml")
    with pytest.raises(InputError) as info:
        load_task_file(path)
    message = str(info.value)
    assert "broken.yaml" in message
    assert "line 4" in message
    assert "column" in message
    assert info.value.exit_code == 2


def test_bad_indentation_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "gpus: 4\n  cpus: 1\n")
    with pytest.raises(InputError, match="line 2"):
        load_task_file(path)


@pytest.mark.parametrize("text", ["- gpus: 4\n", "just a string\n", "", "42\n"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(InputError, match="YAML mapping"):
        load_task_file(write(tmp_path, text))


def test_unknown_keys_are_listed_with_the_allowed_ones() -> None:
    with pytest.raises(InputError) as info:
        parse_task_text("gpus: 1\ncolour: red\nmemory_gb: 3\ncommand: x\n", "t.yaml")
    message = str(info.value)
    assert "colour" in message
    assert "memory_gb" in message
    for key in TASK_KEYS:
        assert key in message


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read task file"):
        load_task_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("env: [A, B]\n", "env must be a mapping"),
        ("command: {a: b}\n", "command must be"),
        ("env: {A: [1]}\n", "env.A must be text"),
    ],
)
def test_wrong_shapes_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        parse_task_text(text, "t.yaml")


def test_flags_override_the_file_and_env_merges_per_key(tmp_path: Path) -> None:
    flags = {**NO_FLAGS, "gpus": 2, "memory": "8G", "name": "override"}
    spec = build_spec(write(tmp_path, VALID), flags, ["SEED=2", "EXTRA=a=b"], ["echo", "hi"])
    assert (spec.gpus, spec.memory_mib, spec.name) == (2, 8192, "override")
    assert spec.gpu_type == "H100"  # not given as a flag: the file's value stands
    assert spec.env == {"SEED": "2", "DEBUG": "true", "MODE": "fast", "EXTRA": "a=b"}
    assert spec.command == ["echo", "hi"]


def test_zero_from_a_flag_still_overrides() -> None:
    merged = merge_request({"gpus": 4, "priority": 3}, {"gpus": 0, "priority": None}, {}, [])
    assert merged == {"gpus": 0, "priority": 3}


def test_flags_alone_make_a_spec() -> None:
    flags = {**NO_FLAGS, "gpus": 0, "cpus": 0.25}
    spec = build_spec(None, flags, [], ["sh", "-c", "echo hi"])
    assert (spec.gpus, spec.cpus, spec.command) == (0, 0.25, ["sh", "-c", "echo hi"])


@pytest.mark.parametrize("item", ["FOO", "=value"])
def test_env_flags_need_a_name_and_an_equals_sign(item: str) -> None:
    with pytest.raises(InputError, match="NAME=VALUE"):
        parse_env_flags([item])


def test_env_flag_values_may_be_empty_or_contain_equals() -> None:
    assert parse_env_flags(["A=", "B=x=y"]) == {"A": "", "B": "x=y"}


def test_no_command_anywhere_is_an_error() -> None:
    with pytest.raises(InputError, match="no command"):
        build_spec(None, NO_FLAGS, [], [])


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({"gpus": 1, "gpu_type": "XYZ"}, "unknown GPU type"),
        ({"max_duration": "-5"}, "max_duration"),
        ({"memory": "lots"}, "memory"),
        ({"gpus": 65}, "gpus"),
    ],
)
def test_invalid_values_fail_locally_with_the_field(
    flags: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InputError) as info:
        build_spec(None, {**NO_FLAGS, **flags}, [], ["true"])
    assert fragment in str(info.value)
    assert info.value.exit_code == 2
