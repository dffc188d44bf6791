"""Pure CLI helpers: error mapping and exit codes, human formats, the up banner and port check."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gpucloud.cli import errors, jobs, main, output, up
from gpucloud.client.client import ApiError, UnreachableError
from gpucloud.core.errors import InvalidRequest
from gpucloud.schemas import JobOut
from gpucloud.settings import Settings


def job(state: str, exit_code: int | None) -> JobOut:
    return JobOut.model_validate({
        "id": "job_1", "name": None, "tenant_id": "t", "user_id": "u", "state": state,
        "reason": "r", "message": "", "command": ["true"], "env": {}, "gpus": 0,
        "gpu_type": None, "cpus": 1.0, "memory_mib": 1024, "priority": 0,
        "max_duration_s": None, "exit_code": exit_code, "restart_count": 0,
        "cancel_requested": False, "created_at": "2026-01-01T00:00:00Z", "started_at": None,
        "ended_at": None,
    })  # fmt: skip


@pytest.mark.parametrize(
    ("state", "code", "expected"),
    [
        ("SUCCEEDED", 0, 0),
        ("SUCCEEDED", None, 0),
        ("FAILED", 7, 7),
        ("FAILED", 0, 1),  # failed without a non-zero code (e.g. lost): still a failure
        ("CANCELLED", None, 1),
        ("CANCELLED", 143, 143),
        ("FAILED", -9, 1),
    ],
)
def test_exit_code_of_a_job(state: str, code: int | None, expected: int) -> None:
    assert jobs.exit_code_of(job(state, code)) == expected


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (errors.InputError("fix the file"), 2, "error: fix the file\n"),
        (ApiError(404, "not_found", "job 'x' not found"), 1, "error: job 'x' not found\n"),
        (ApiError(422, "never_fits", "never fits"), 2, "error: never fits\n"),
        (InvalidRequest("bad\nvalue"), 2, "error: bad value\n"),
        (UnreachableError("http://h:1"), 1, "error: cannot reach gpucloud at http://h:1"),
        (TimeoutError("still RUNNING"), 1, "error: still RUNNING\n"),
    ],
)
def test_expected_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], raised: Exception, code: int, line: str
) -> None:
    def fail() -> int:
        raise raised

    assert errors.guarded(fail) == code
    err = capsys.readouterr().err
    assert err.startswith(line)
    assert err.count("\n") == 1


def test_usage_errors_exit_2_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.run(["ps", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "--bogus" in err
    assert "Traceback" not in err


def test_a_missing_token_says_how_to_get_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GPUCLOUD_TOKEN", raising=False)
    monkeypatch.setenv("GPUCLOUD_CONFIG", str(tmp_path / "none.json"))
    assert main.run(["ps"]) == 1
    assert capsys.readouterr().err == (
        "error: no API token: run 'gpucloud login URL --token T' or set GPUCLOUD_TOKEN\n"
    )


def test_invalid_run_flags_exit_2_before_any_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUCLOUD_URL", "http://127.0.0.1:9")  # nothing listens: must not matter
    monkeypatch.setenv("GPUCLOUD_TOKEN", "t")
    assert main.run(["run", "--gpus", "1", "--gpu-type", "XYZ", "--", "true"]) == 2
    assert "unknown GPU type" in capsys.readouterr().err


def test_invalid_simulation_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.run(["up", "--simulate-gpus", "lots", "--port", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: --simulate-gpus")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (61, "1m1s"), (3600, "1h"), (5400, "1h30m"), (90000, "1d1h")],
)
def test_durations(seconds: int, text: str) -> None:
    assert output.duration(seconds) == text


def test_ages_and_sizes() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert output.age(now - timedelta(minutes=3), now) == "3m"
    assert output.age(datetime(2026, 1, 1, 11), now) == "1h"  # naive means UTC
    assert output.age(None, now) == "-"
    assert (output.mib(16384), output.mib(1536), output.mib(512)) == ("16G", "1.5G", "512M")


def test_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(errors.CliError, match=f"port {port} is in use: pass --port"):
            up.check_port_free("127.0.0.1", port)


def test_banner_says_how_to_connect(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, port=8999, database_url="postgresql://u:pw@db/gc")
    (tmp_path / "admin.token").write_text("x")
    text = up.banner(settings, "simulating 8xH100", new_token=True)
    assert "gpucloud is up at http://127.0.0.1:8999" in text
    assert "local: simulating 8xH100" in text
    assert "pw" not in text
    assert f"admin token in {tmp_path / 'admin.token'} (mode 0600) (new)" in text
    assert f"export GPUCLOUD_TOKEN=$(cat {tmp_path / 'admin.token'})" in text
    assert "console  http://127.0.0.1:8999/ (sign in with that token)" in text
