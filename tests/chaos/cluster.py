"""Control-plane replicas the chaos test kills and restarts, and an API client that rides it out."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Replica:
    """One ``gpucloud up`` slot: always the same port, a new process after every kill."""

    port: int
    data_dir: Path
    args: tuple[str, ...]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: int = 0  # ended by itself, not by the killer: should never happen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start without waiting: a process may well be killed again before it serves."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCLOUD_")}
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts} ---\n".encode())
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gpucloud.cli.main", "up", "--data-dir",
                 str(self.data_dir), "--port", str(self.port), *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        try:
            return self.alive() and httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


def wait_healthy(replicas: list[Replica], timeout_s: float = 120) -> Replica:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for replica in replicas:
            if replica.healthy():
                return replica
            if replica.process is not None and replica.process.poll() is not None:
                replica.exits += 1  # died by itself (not our kill): see its log
                replica.start()
        time.sleep(0.1)
    raise AssertionError("no replica became healthy: " + ", ".join(str(r.log) for r in replicas))


@dataclass
class Api:
    """Calls any live replica; a refused connection or a 503 moves on to another one. Writes
    carry an Idempotency-Key, so a call resent after its replica died is done once."""

    replicas: list[Replica]
    token: str
    rng: random.Random = field(default_factory=random.Random)
    resends: int = 0

    def call(self, method: str, path: str, body: Any = None, key: str | None = None,
             timeout_s: float = 120) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        deadline = time.monotonic() + timeout_s
        while True:
            for replica in self.rng.sample(self.replicas, len(self.replicas)):
                try:
                    response = httpx.request(method, replica.url + path, json=body,
                                             headers=headers, timeout=10)
                except httpx.HTTPError:
                    self.resends += 1
                    continue
                if response.status_code == 503:
                    self.resends += 1
                    continue
                if response.status_code >= 400:
                    raise AssertionError(f"{method} {path}: {response.status_code} "
                                         f"{response.text}")
                return response.json()
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: no replica answered in {timeout_s} s")
            time.sleep(0.2)
