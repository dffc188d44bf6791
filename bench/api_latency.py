"""API latency on the embedded default (SQLite + local engine), from a second process.

Starts `gpucloud up` in a temporary data dir, then times N requests each of create (POST
/v1/jobs), get (GET /v1/jobs/{id}) and list (GET /v1/jobs?limit=50) over loopback, one at a
time, and prints p50/p99/max per operation. Created jobs queue behind one 8-GPU job so that the
run measures the API rather than process start-up.

    python bench/api_latency.py [--requests 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import kill_job_processes, start_server

from bench.machine import describe


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(n: int, call: Callable[[int], httpx.Response]) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        response = call(i)
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        server = start_server(data_dir, None, "--simulate-gpus", "8xH100")
        try:
            client = httpx.Client(
                base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {server.token}"}
            )
            job = {"command": ["sleep", "600"], "gpus": 8, "cpus": 0.1}
            client.post("/v1/jobs", json=job).raise_for_status()  # holds every GPU
            ids: list[str] = []

            def create(_: int) -> httpx.Response:
                response = client.post("/v1/jobs", json=job)
                ids.append(response.json()["id"])
                return response

            results = {
                "create": timed(args.requests, create),
                "get": timed(args.requests, lambda i: client.get(f"/v1/jobs/{ids[i % len(ids)]}")),
                "list": timed(
                    args.requests, lambda _: client.get("/v1/jobs", params={"limit": 50})
                ),
            }
        finally:
            server.stop()
            kill_job_processes(data_dir)
    report = {
        "machine": describe(),
        "requests_per_operation": args.requests,
        "ms": {
            op: {
                "p50": round(statistics.median(s), 2),
                "p99": round(percentile(s, 0.99), 2),
                "max": round(max(s), 2),
            }
            for op, s in results.items()
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    machine = report["machine"]
    print(f"machine: {machine['cpu_model']} x{machine['cpus']}, Python {machine['python']}")
    print(f"{args.requests} sequential requests per operation, SQLite + local engine, loopback")
    print(f"{'operation':<10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for op, figures in report["ms"].items():  # type: ignore[union-attr]
        print(f"{op:<10}{figures['p50']:>10}{figures['p99']:>10}{figures['max']:>10}")


if __name__ == "__main__":
    main()
