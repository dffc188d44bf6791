"""One real control plane for the e2e session (``gpucloud up`` as a subprocess, 8 simulated
H100s), and helpers that drive it through the real CLI, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gpucloud.client.client import Client
from gpucloud.core.states import TERMINAL, JobState
from tests.servers import free_port, kill_job_processes, start_server

T = TypeVar("T")
CLI_TIMEOUT_S = 90.0
ACTIVE = [s.value for s in JobState if s not in TERMINAL]


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


@dataclass
class Cloud:
    url: str
    token: str  # the operator admin's
    data_dir: Path
    home: Path  # GPUCLOUD_CONFIG lives here: never the developer's own profile

    def env(self, token: str | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCLOUD_")}
        env.update(GPUCLOUD_URL=self.url, GPUCLOUD_TOKEN=token or self.token,
                   GPUCLOUD_CONFIG=str(self.home / "config.json"))  # fmt: skip
        env.update(extra)
        return env

    def cli(self, *args: str, token: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """``gpucloud ARGS`` in a subprocess; never raises on a non-zero exit."""
        return subprocess.run(
            [sys.executable, "-m", "gpucloud.cli.main", *args],
            env=env if env is not None else self.env(token),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )

    def ok(self, *args: str, token: str | None = None) -> str:
        """stdout of a command that must succeed."""
        result = self.cli(*args, token=token)
        assert result.returncode == 0, f"gpucloud {' '.join(args)}: {result.stderr}"
        return result.stdout

    def json(self, *args: str, token: str | None = None) -> Any:
        """The parsed stdout of ``gpucloud ARGS --json`` (which must be JSON only)."""
        cut = args.index("--") if "--" in args else len(args)  # flags go before the command
        return json.loads(self.ok(*args[:cut], "--json", *args[cut:], token=token))

    def popen(self, *args: str, token: str | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "gpucloud.cli.main", *args],
            env=self.env(token),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sdk(self, token: str | None = None) -> Client:
        return Client(self.url, token or self.token)

    def job(self, job_id: str, token: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = self.json("show", job_id, token=token)
        return data

    def wait_state(self, job_id: str, *states: str, timeout: float = 60.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in states else None

        return wait_for(reached, f"{job_id} to reach {'/'.join(states)}", timeout)

    def settle(self) -> None:
        """Cancel whatever is still active, so the next test finds a free fleet."""
        with self.sdk() as api:
            for job in api.list_jobs(states=ACTIVE):
                api.cancel_job(job.id)
            for job in api.list_jobs(states=ACTIVE):
                api.wait_job(job.id, timeout=60, poll_s=0.2)


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    base = tmp_path_factory.mktemp("e2e")
    data_dir = base / "data"
    server = start_server(data_dir, free_port(), "--simulate-gpus", "8xH100", "--stop-grace-s", "2")
    home = base / "home"
    home.mkdir()
    try:
        token = wait_for(
            lambda: server.token if (data_dir / "admin.token").exists() else None,
            "the admin token file",
        )
        yield Cloud(server.url, token, data_dir, home)
    finally:
        server.stop()  # SIGTERM, then SIGKILL if it lingers
        kill_job_processes(data_dir)  # jobs outlive the control plane by design


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A file whose creation lets gated jobs finish: tests decide when, never a sleep."""
    path = tmp_path / "gate"
    yield path
    path.touch()


def gated(gate: Path, before: str = "echo $CUDA_VISIBLE_DEVICES", after: str = "") -> str:
    """A shell script that runs ``before``, waits for the gate (at most ~2 minutes), then
    ``after``."""
    wait = f"i=0; while [ ! -e '{gate}' ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done"
    return "; ".join(part for part in (before, wait, after) if part)
