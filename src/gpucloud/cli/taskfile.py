"""Task files and ``gpucloud run`` flags, merged into one job request (pure: no I/O but reading
the file), so that the CLI can validate everything before anything is sent.

A task file is a YAML mapping with the fields of the flags::

    name: train-llm
    nodes: 2                                # optional: a multi-node gang, GPUs per node below
    gpus: 4
    gpu_type: H100
    memory: 64G
    max_duration: 2h
    env: {SEED: "1"}
    command: python train.py --epochs 3     # or a list: [python, train.py]

Flags given on the command line override the file; a command after ``--`` replaces the file's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gpucloud.cli.errors import InputError
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.jobspec import JobSpec, parse_job_spec

TASK_KEYS = (
    "name",
    "nodes",
    "gpus",
    "gpus_per_node",
    "gpu_type",
    "cpus",
    "memory",
    "max_duration",
    "priority",
    "env",
    "command",
    "volumes",  # NAME:/path[:ro] (docs/storage.md)
    "datasets",  # name[:version]
)


def _scalar_text(value: Any, where: str) -> str:
    """YAML reads ``SEED: 1`` as an int and ``DEBUG: true`` as a bool; the job gets text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InputError(f"{where} must be text, got {type(value).__name__} {value!r}")


def parse_task_text(text: str, source: str) -> dict[str, Any]:
    """The task file's fields, checked for shape (values are checked by the JobSpec)."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source} line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = err.problem or err.context or "invalid YAML"
        raise InputError(f"{where}: cannot parse YAML: {problem}") from err
    except yaml.YAMLError as err:
        raise InputError(f"{source}: cannot parse YAML: {err}") from err
    if not isinstance(data, dict):
        shown = "empty" if data is None else f"a {type(data).__name__}"
        raise InputError(
            f"{source}: a task file is a YAML mapping of job fields (e.g. 'gpus: 4'), "
            f"but this one is {shown}"
        )
    unknown = sorted(str(k) for k in data if k not in TASK_KEYS)
    if unknown:
        raise InputError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(TASK_KEYS)}"
        )
    fields = dict(data)
    if "env" in fields:
        env = fields["env"]
        if env is None:
            env = {}
        if not isinstance(env, dict):
            raise InputError(f"{source}: env must be a mapping of NAME: value")
        fields["env"] = {str(k): _scalar_text(v, f"{source}: env.{k}") for k, v in env.items()}
    if "command" in fields:
        command = fields["command"]
        if isinstance(command, list):
            fields["command"] = [_scalar_text(part, f"{source}: command") for part in command]
        elif not isinstance(command, str):
            raise InputError(f"{source}: command must be a string or a list of strings")
    return fields


def load_task_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"cannot read task file {path}: {err.strerror or err}") from err
    return parse_task_text(text, str(path))


def parse_env_flags(values: Sequence[str]) -> dict[str, str]:
    """``--env K=V`` flags; the value may contain '=' and may be empty."""
    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--env {item!r}: write NAME=VALUE, e.g. --env SEED=1")
        env[key] = value
    return env


def merge_request(
    file_fields: Mapping[str, Any],
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    command: Sequence[str],
) -> dict[str, Any]:
    """File values, overridden by flags that were given (not None), per key for env."""
    merged = dict(file_fields)
    merged.update({k: v for k, v in flags.items() if v is not None})
    if env:
        merged["env"] = {**merged.get("env", {}), **env}
    if command:
        merged["command"] = list(command)
    return merged


def build_spec(
    task_file: Path | None,
    flags: Mapping[str, Any],
    env_flags: Sequence[str],
    command: Sequence[str],
) -> JobSpec:
    """The validated job request, or a InputError naming what to fix."""
    file_fields = load_task_file(task_file) if task_file is not None else {}
    merged = merge_request(file_fields, flags, parse_env_flags(env_flags), command)
    if not merged.get("command"):
        raise InputError(
            "no command: put it after '--' (gpucloud run --gpus 1 -- python train.py) "
            "or set 'command:' in a task file"
        )
    try:
        return parse_job_spec(merged)
    except InvalidRequest as err:
        raise InputError(f"invalid job: {err}") from err
