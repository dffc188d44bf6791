"""Server CPU per request, per operation of bench/load.py's mix, one request at a time.

Starts `gpucloud up` (SQLite, one process), sets up as bench/load.py does, measures the
server's idle CPU for 3 s, then sends N requests of each operation in turn and prints the
server CPU each cost (from /proc/PID/stat, idle subtracted) and its latency. It says where the
load bench's CPU goes; it is not a throughput figure.

    python bench/api_cpu.py [--requests 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import kill_job_processes, start_server

from bench.api_latency import percentile
from bench.load import JOB, set_up
from bench.machine import describe


def cpu_s(pid: int) -> float:
    """User + system CPU of a process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        server = start_server(data_dir, None, "--simulate-gpus", "8xH100")
        try:
            token, ids, nodes = set_up(server.url, server.token)
            client = httpx.Client(base_url=server.url,
                                  headers={"Authorization": f"Bearer {token}"})
            pid = server.process.pid
            before = cpu_s(pid)
            time.sleep(3)
            idle_per_s = (cpu_s(pid) - before) / 3
            submitted: list[str] = []
            ops: dict[str, Callable[[int], httpx.Response]] = {
                "healthz": lambda i: client.get("/healthz"),
                "show_job": lambda i: client.get(f"/v1/jobs/{ids[i % len(ids)]}"),
                "wallet": lambda i: client.get("/v1/wallet"),
                "show_node": lambda i: client.get(f"/v1/nodes/{nodes[0]}"),
                "list_jobs": lambda i: client.get("/v1/jobs", params={"limit": 50}),
                "list_events": lambda i: client.get("/v1/events", params={"limit": 50}),
                "usage": lambda i: client.get("/v1/usage"),
                "list_nodes": lambda i: client.get("/v1/nodes"),
                "submit_job": lambda i: client.post("/v1/jobs", json=JOB),
                "cancel_job": lambda i: client.post(f"/v1/jobs/{submitted[i]}/cancel"),
            }
            figures = {}
            for name, call in ops.items():
                latencies = []
                cpu0, t0 = cpu_s(pid), time.monotonic()
                for i in range(n):
                    began = time.perf_counter()
                    response = call(i)
                    latencies.append((time.perf_counter() - began) * 1000)
                    response.raise_for_status()
                    if name == "submit_job":
                        submitted.append(response.json()["id"])
                spent = cpu_s(pid) - cpu0 - idle_per_s * (time.monotonic() - t0)
                figures[name] = {"cpu_ms": round(spent / n * 1000, 2),
                                 "p50_ms": round(percentile(latencies, 0.5), 2),
                                 "p99_ms": round(percentile(latencies, 0.99), 2)}
        finally:
            server.stop()
            kill_job_processes(data_dir)
    return {"machine": describe(), "requests": n,
            "idle_cpu_ms_per_s": round(idle_per_s * 1000, 1), "operations": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure(args.requests)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.requests} requests per operation; idle server "
          f"{report['idle_cpu_ms_per_s']} ms CPU per s")
    print(f"{'operation':<14}{'cpu ms':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for name, f in report["operations"].items():  # type: ignore[attr-defined]
        print(f"{name:<14}{f['cpu_ms']:>8}{f['p50_ms']:>9}{f['p99_ms']:>9}")


if __name__ == "__main__":
    main()
