"""Inference services on the embedded default (SQLite + local engine): examples/chat_server.py
behind a service, measured from a second process over loopback.

- proxy_overhead_p50_ms / _p99_ms: the same request through the route (/s/TENANT/NAME/...)
  and straight to the replica, interleaved in one run; the difference of the percentiles;
- rps: requests per second through the one router process (concurrent clients, one replica);
- scale_up_s: from a load step to a new replica serving a request;
- cold_start_s: the first request to a service scaled to zero, until its answer;
- errors_during_update: failed requests during a rolling update under load.

    python bench/serve.py [--requests 500] [--seconds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import kill_job_processes, start_server

from bench.machine import describe

CHAT = str(Path(__file__).resolve().parent.parent / "examples" / "chat_server.py")
ASK = {"messages": [{"role": "user", "content": "how fast is the router"}]}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait(probe: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


class Bench:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.api = httpx.Client(base_url=url, timeout=90,
                                headers={"Authorization": f"Bearer {token}"})
        self.token = token

    def create(self, name: str, **spec: Any) -> None:
        body = {"name": name, "command": [sys.executable, CHAT], "gpus": 0, "cpus": 0.2,
                "memory": "256M", **spec}
        self.api.post("/v1/services", json=body).raise_for_status()

    def show(self, name: str) -> dict[str, Any]:
        shown: dict[str, Any] = self.api.get(f"/v1/services/{name}").json()
        return shown

    def ready(self, name: str, n: int) -> dict[str, Any]:
        found: dict[str, Any] = wait(
            lambda: (s := self.show(name))["ready_replicas"] >= n and s, f"{n} ready of {name}")
        return found

    def route(self, name: str) -> str:
        return f"{self.url}/s/operator/{name}/v1/chat/completions"

    def overhead(self, n: int) -> tuple[float, float, float, float]:
        """p50/p99 through the route and direct, interleaved on kept-alive connections."""
        replica = self.ready("fixed", 1)["replicas"][0]
        direct_url = f"http://{replica['host']}:{replica['port']}/v1/chat/completions"
        routed: list[float] = []
        direct: list[float] = []
        with httpx.Client(headers={"Authorization": f"Bearer {self.token}"}) as http:
            for _ in range(20):  # warm both paths
                http.post(self.route("fixed"), json=ASK)
                http.post(direct_url, json=ASK)
            for _ in range(n):
                for url, samples in ((self.route("fixed"), routed), (direct_url, direct)):
                    start = time.perf_counter()
                    http.post(url, json=ASK).raise_for_status()
                    samples.append((time.perf_counter() - start) * 1000)
        return (statistics.median(routed), percentile(routed, 0.99),
                statistics.median(direct), percentile(direct, 0.99))

    def rps(self, seconds: float, concurrency: int = 32) -> float:
        async def run() -> int:
            done = 0
            deadline = time.monotonic() + seconds
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {self.token}"},
                                         timeout=60) as http:
                async def worker() -> None:
                    nonlocal done
                    while time.monotonic() < deadline:
                        (await http.post(self.route("fixed"), json=ASK)).raise_for_status()
                        done += 1

                await asyncio.gather(*(worker() for _ in range(concurrency)))
            return done

        start = time.monotonic()
        done = asyncio.run(run())
        return done / (time.monotonic() - start)


class Load:
    def __init__(self, url: str, token: str, workers: int) -> None:
        self.ok, self.errors, self.served_by = 0, 0, set[str]()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(url, token), daemon=True)
                         for _ in range(workers)]
        for thread in self._threads:
            thread.start()

    def _run(self, url: str, token: str) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=90) as http:
            while not self._stop.is_set():
                try:
                    answer = http.post(url, json=ASK)
                except httpx.HTTPError:
                    self.errors += 1
                    continue
                if answer.status_code == 200:
                    self.ok += 1
                    self.served_by.add(answer.headers.get("x-served-by", ""))
                else:
                    self.errors += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def measure(bench: Bench, requests: int, seconds: float) -> dict[str, Any]:
    bench.create("fixed", min_replicas=1, max_replicas=1)
    bench.create("scale", min_replicas=1, max_replicas=3, target_concurrency=2,
                 stabilization="30s", env={"CHAT_DELAY_S": "0.05"})
    bench.create("cold", min_replicas=0, max_replicas=1, target_rps=100, scale_to_zero="3s")
    routed_p50, routed_p99, direct_p50, direct_p99 = bench.overhead(requests)
    rps = bench.rps(seconds)

    # Scale-up: a load step on "scale" (one replica) until a second replica serves.
    first = {str(r["port"]) for r in bench.ready("scale", 1)["replicas"]}
    load = Load(bench.route("scale"), bench.token, workers=8)
    step = time.monotonic()
    wait(lambda: load.served_by - first - {""}, "a new replica serving", timeout_s=60)
    scale_up_s = time.monotonic() - step
    # Rolling update of "scale" under the same load.
    before = load.errors
    bench.api.patch("/v1/services/scale", json={"env": {"CHAT_DELAY_S": "0.05",
                                                         "CHAT_VERSION": "v2"}}
                    ).raise_for_status()

    def rolled() -> bool:
        s = bench.show("scale")
        return bool(s["replicas"] and s["ready_replicas"] == len(s["replicas"])
                    and all(r["generation"] == 2 for r in s["replicas"]))

    wait(rolled, "the rolling update", timeout_s=120)
    load.stop()
    errors_during_update = load.errors - before

    wait(lambda: bench.show("cold")["state"] == "IDLE", "scale to zero", timeout_s=60)
    start = time.monotonic()
    httpx.post(bench.route("cold"), json=ASK, timeout=90,
               headers={"Authorization": f"Bearer {bench.token}"}).raise_for_status()
    cold_start_s = time.monotonic() - start
    return {
        "proxy_overhead_p50_ms": round(routed_p50 - direct_p50, 3),
        "proxy_overhead_p99_ms": round(routed_p99 - direct_p99, 3),
        "routed_p50_ms": round(routed_p50, 3), "direct_p50_ms": round(direct_p50, 3),
        "rps": round(rps, 1),
        "scale_up_s": round(scale_up_s, 2),
        "cold_start_s": round(cold_start_s, 2),
        "errors_during_update": errors_during_update,
        "requests_during_update_and_step": load.ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="per path, for the overhead")
    parser.add_argument("--seconds", type=float, default=5.0, help="of load, for rps")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        server = start_server(data_dir, None, "--simulate-gpus", "1xH100")
        try:
            figures = measure(Bench(server.url, server.token), args.requests, args.seconds)
        finally:
            server.stop()
            kill_job_processes(data_dir)
    report = {"machine": describe(), "load_average": os.getloadavg(), **figures}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    machine = report["machine"]
    print(f"machine: {machine['cpu_model']} x{machine['cpus']}, Python {machine['python']}, "
          f"load average {report['load_average'][0]:.1f} (a busy machine inflates latency)")
    print("examples/chat_server.py behind a service; SQLite + local engine, loopback")
    for key, value in figures.items():
        print(f"{key:<34}{value}")


if __name__ == "__main__":
    main()
