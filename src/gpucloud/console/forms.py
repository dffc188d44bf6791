"""The submit form to a JobSpec: the form's text fields become the request the API takes,
and the API's own validation (``core.jobspec``) decides what is valid."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gpucloud.core.errors import InvalidRequest
from gpucloud.core.jobspec import JobSpec, parse_job_spec

FIELDS = (
    "name",
    "command",
    "nodes",
    "gpus",
    "gpu_type",
    "cpus",
    "memory",
    "max_duration",
    "env",
    "priority",
    "tier",
)
DEFAULTS: dict[str, str] = {
    "name": "",
    "command": "",
    "nodes": "1",
    "gpus": "1",
    "gpu_type": "",
    "cpus": "1",
    "memory": "1G",
    "max_duration": "",
    "env": "",
    "priority": "0",
    "tier": "on-demand",
}


@dataclass(frozen=True)
class SubmitForm:
    values: dict[str, str]
    spec: JobSpec | None = None
    error: str = ""
    error_field: str = ""  # the field to mark invalid, when the error names one


def values_of(form: Mapping[str, object]) -> dict[str, str]:
    out = dict(DEFAULTS)
    for key in FIELDS:
        value = form.get(key)
        if isinstance(value, str):
            out[key] = value.strip() if key not in ("command", "env") else value
    return out


def parse_env(text: str) -> dict[str, str]:
    """One ``KEY=VALUE`` a line; blank lines and lines starting with '#' are skipped."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"env line {number}: write KEY=VALUE, got {line!r}", "env")
        env[key.strip()] = value
    return env


def _int(values: Mapping[str, str], key: str) -> int:
    try:
        return int(values[key])
    except ValueError:
        raise InvalidRequest(f"{key}: enter a whole number, got {values[key]!r}", key) from None


def _float(values: Mapping[str, str], key: str) -> float:
    try:
        return float(values[key])
    except ValueError:
        raise InvalidRequest(f"{key}: enter a number, got {values[key]!r}", key) from None


def request_of(values: Mapping[str, str]) -> dict[str, object]:
    """The request body the API would get (``POST /v1/jobs``) for these form values."""
    if not values["command"].strip():
        raise InvalidRequest("command: enter the command to run (it runs with /bin/sh -c)",
                             "command")
    body: dict[str, object] = {
        "command": ["/bin/sh", "-c", values["command"].replace("\r\n", "\n")],
        "nodes": _int(values, "nodes"),
        "gpus": _int(values, "gpus"),
        "cpus": _float(values, "cpus"),
        "memory": values["memory"] or DEFAULTS["memory"],
        "priority": _int(values, "priority"),
        "tier": values["tier"] or DEFAULTS["tier"],
        "env": parse_env(values["env"]),
    }
    if values["name"]:
        body["name"] = values["name"]
    if values["gpu_type"]:
        body["gpu_type"] = values["gpu_type"]
    if values["max_duration"]:
        body["max_duration"] = values["max_duration"]
    return body


def parse(form: Mapping[str, object]) -> SubmitForm:
    values = values_of(form)
    try:
        return SubmitForm(values, spec=parse_job_spec(request_of(values)))
    except InvalidRequest as err:
        return SubmitForm(values, error=str(err), error_field=_field_of(err))


def _field_of(err: InvalidRequest) -> str:
    """The form field an error is about: its own field, or the one its message starts with."""
    if err.field in FIELDS:
        return err.field or ""
    head = str(err).split(":", 1)[0].strip()
    aliases = {"memory_mib": "memory", "max_duration_s": "max_duration"}
    head = aliases.get(head, head)
    return head if head in FIELDS else ""
