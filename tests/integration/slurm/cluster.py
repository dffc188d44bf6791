"""A real Slurm cluster for tests (../shared/slurm/start-slurm.sh), and gpucloud on top of it.

Each pytest session gets its own cluster (its own state directory and ports), so that two
sessions on one machine (two checkouts, or a developer next to CI) never share nodes or kill
each other's daemons. A session that was killed leaves its daemons behind; the next session
stops them by their PID files (stop-slurm.sh).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.servers import Server, free_port

REPO = Path(__file__).resolve().parents[3]
# The recipe of ../shared/slurm/, or wherever GPUCLOUD_SLURM_RECIPE says it is.
SHARED = Path(os.environ.get("GPUCLOUD_SLURM_RECIPE") or REPO.parent / "shared" / "slurm")
START = SHARED / "start-slurm.sh"
STOP = SHARED / "stop-slurm.sh"
DIR_PREFIX = "gpucloud-slurm-pytest-"
NODES, GPUS_PER_NODE = 4, 8


def clean_env() -> dict[str, str]:
    """This process's environment without gpucloud's, Slurm's or slurmrestd's settings."""
    skip = ("GPUCLOUD_", "SLURM", "SBATCH_", "SQUEUE_", "SINFO_", "SRUN_")
    return {k: v for k, v in os.environ.items() if not k.startswith(skip)}


def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block(count: int) -> int:
    """A base port with ``count`` free ports from it, below the ephemeral range and outside
    gpucloud's rendezvous ports (20000-29999)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(30000, 32700 - count, 10)
        if _ports_free(list(range(base, base + count))):
            return base
    raise RuntimeError("no block of free ports in 30000-32700")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_stale_clusters(tmp: Path = Path("/tmp")) -> None:
    """Stop clusters of pytest sessions that died without stopping theirs."""
    for path in tmp.glob(f"{DIR_PREFIX}*"):
        suffix = path.name.removeprefix(DIR_PREFIX).removesuffix(".lock")
        if not suffix.isdigit() or _pid_alive(int(suffix)):
            continue
        if path.is_dir():
            subprocess.run(["bash", str(STOP)], env={**clean_env(), "SLURM_TEST_DIR": str(path)},
                           capture_output=True, timeout=120, check=False)
        else:  # start-slurm.sh's lock file beside the directory
            path.unlink(missing_ok=True)


@dataclass
class SlurmCluster:
    exports: dict[str, str]  # what start-slurm.sh printed: SLURM_CONF, SLURMRESTD_URL, ...

    @property
    def dir(self) -> Path:
        return Path(self.exports["SLURM_TEST_DIR"])

    @property
    def conf(self) -> str:
        return self.exports["SLURM_CONF"]

    @property
    def nodes(self) -> list[str]:
        return self.exports["SLURM_TEST_NODES"].split(",")

    @property
    def env(self) -> dict[str, str]:
        """For Slurm commands: SLURM_CONF only (SLURM_JWT would switch them to JWT)."""
        return {**clean_env(), "SLURM_CONF": self.conf}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(list(args), env=self.env, capture_output=True, text=True,
                              timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {done.stderr or done.stdout}")
        return done

    def jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = json.loads(self.run("squeue", "--json").stdout)["jobs"]
        return jobs

    def job(self, job_id: int) -> dict[str, Any]:
        return next(j for j in self.jobs() if j["job_id"] == job_id)

    def node(self, name: str) -> dict[str, Any]:
        nodes = json.loads(self.run("sinfo", "--json").stdout)["nodes"]
        found: dict[str, Any] = next(n for n in nodes if n["name"] == name)
        return found

    def scontrol(self, *args: str) -> str:
        return self.run("scontrol", *args).stdout

    def resume_all(self) -> list[str]:
        """Resume the nodes a test set down or drained (not gpucloud's own drains, which
        gpucloud undoes when its quarantine ends); returns the nodes resumed."""
        resumed = []
        for name in self.nodes:
            node = self.node(name)
            ours = node["reason"].startswith("gpucloud: ")
            if node["state"] == "down" or ("DRAIN" in node["state_flags"] and not ours):
                self.run("scontrol", "update", f"nodename={name}", "state=resume", check=False)
                resumed.append(name)
        return resumed

    def _pid(self, name: str) -> int:
        return int((self.dir / "run" / f"{name}.pid").read_text().strip())

    def restart_slurmctld(self) -> None:
        """Stop slurmctld (SIGTERM: it saves its state) and start it again from that state."""
        pid = self._pid("slurmctld")
        os.kill(pid, 15)
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _pid_alive(pid), "slurmctld did not stop"
        assert self.run("scontrol", "ping", check=False).returncode != 0
        log = (self.dir / "log" / "slurmctld.log").open("ab")
        with log:
            subprocess.run(["slurmctld", "-f", self.conf], env=self.env, stdin=subprocess.DEVNULL,
                           stdout=log, stderr=log, check=True, timeout=60)
        deadline = time.monotonic() + 30
        while "is UP" not in self.run("scontrol", "ping", check=False).stdout:
            assert time.monotonic() < deadline, "slurmctld did not come back"
            time.sleep(0.2)


def start_cluster(state_dir: Path) -> SlurmCluster:
    base = free_port_block(10)
    settings = {
        "SLURM_TEST_DIR": str(state_dir),
        "NODES": str(NODES),
        "GPUS_PER_NODE": str(GPUS_PER_NODE),
        "ACCOUNTING": "0",  # gpucloud reads no accounting: a lighter, quicker cluster
        "RESTD": "1",
        "SLURMCTLD_PORT": str(base),
        "SLURMRESTD_PORT": str(base + 1),
        "SLURMDBD_PORT": str(base + 2),
        "MARIADB_PORT": str(base + 3),
        "SLURMD_PORT_BASE": str(base + 4),
    }
    done = subprocess.run(["bash", str(START)], env={**clean_env(), **settings},
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{START} failed ({done.returncode}): {done.stderr[-3000:]}")
    exports = dict(line.removeprefix("export ").split("=", 1)
                   for line in done.stdout.splitlines() if line.startswith("export "))
    return SlurmCluster(exports)


def stop_cluster(cluster: SlurmCluster) -> None:
    subprocess.run(["bash", str(STOP)], env={**clean_env(), "SLURM_TEST_DIR": str(cluster.dir)},
                   capture_output=True, timeout=180, check=False)
    cluster.dir.with_name(cluster.dir.name + ".lock").unlink(missing_ok=True)


def start_cloud(data_dir: Path, cluster: SlurmCluster, *extra: str, api: str = "cli",
                timeout_s: float = 60) -> Server:
    """``gpucloud up --engine slurm`` as a subprocess, as an operator would start it."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"server-{port}-{time.monotonic_ns()}.log"
    env: Mapping[str, str] = clean_env()
    args = ["--engine", "slurm", "--slurm-conf", cluster.conf, "--slurm-api", api]
    if api == "rest":
        env = {**env, "SLURMRESTD_TOKEN": cluster.exports["SLURMRESTD_TOKEN"]}
        args += ["--slurm-rest-url", cluster.exports["SLURMRESTD_URL"]]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gpucloud.cli.main", "up", "--data-dir", str(data_dir),
             "--port", str(port), *args, *extra],
            stdout=out, stderr=subprocess.STDOUT, env=dict(env),
        )
    server = Server(process, f"http://127.0.0.1:{port}", data_dir, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gpucloud up exited early:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"gpucloud up did not become healthy:\n{log.read_text()}")
