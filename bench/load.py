"""Load: mixed API reads and writes at a fixed rate, from a second process on loopback.

Starts `gpucloud up` (SQLite in a temporary data dir; with --database-url, a fresh database of
its own on that PostgreSQL server, dropped afterwards), makes a tenant with credit, then a
separate driver process sends REQUESTS OPEN-LOOP: request i is sent at start + i/rate whether or
not earlier ones have answered, so a slow server meets a growing backlog instead of a politely
waiting client. Each latency is measured from the request's scheduled time to its answer, so
time the driver itself fell behind counts against the server too (no coordinated omission).
The driver uses aiohttp: httpx's async client needed a whole core of a 2-core machine for
200 requests/s, which left the server the other one minus the driver's lag.
With 100 requests already unanswered a new one is shed (an error, not sent); what has not
answered 10 s after the last send is an error too, so an overloaded server ends the run.

The mix (per request, seeded): single-object reads (show job, wallet, show node), lists (jobs,
events, usage, nodes) and writes (submit job, cancel job). Submitted jobs queue behind one job
that holds every GPU, so the run measures the API and the controllers beside it, not job start.
Targets (issue 12): p99 <= 50 ms for single-object calls, 0 errors.

    python bench/load.py [--json] [--ci | --duration S] [--rate R] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import kill_job_processes, start_server

from bench.api_latency import percentile
from bench.machine import describe
from gpucloud.store.db import Database
from gpucloud.store.pg_checks import server_settings, warnings_for

FULL_S = 300.0
CI_S = 30.0
RATE = 200.0
TARGET_SINGLE_P99_MS = 50.0
WORKERS = 2  # one per core of the 2-core machines we measure on (docs/operations.md)
TIMEOUT_S = 10.0  # per request, the wait for a pooled connection included
DRAIN_S = 10.0
MAX_IN_FLIGHT = 100  # = the driver's connection pool
SHED = f"not sent: {MAX_IN_FLIGHT} requests already waiting for an answer"
JOB = {"command": ["sleep", "600"], "gpus": 1, "cpus": 0.1}
SEED_JOBS = 50
# (operation, route class, weight): about a fifth writes, like a busy tenant's CLI and console.
MIX = [
    ("show_job", "single", 25),
    ("wallet", "single", 10),
    ("show_node", "single", 5),
    ("list_jobs", "list", 15),
    ("list_events", "list", 10),
    ("usage", "list", 10),
    ("list_nodes", "list", 5),
    ("submit_job", "write", 12),
    ("cancel_job", "write", 8),
]
CLASSES = ("single", "list", "write")


@dataclass
class Sample:
    op: str
    kind: str
    ms: float  # scheduled send -> answer
    lag_ms: float  # scheduled send -> actually sent (the driver's own delay)
    status: int  # 0: no answer (connection error or timeout)
    error: str
    at_s: float = 0.0  # when it was scheduled, from the start of the run


# --- the driver: a second process -------------------------------------------------------------


class Driver:
    """Sends the mix open-loop; keeps the ids it needs (jobs to show and to cancel)."""

    def __init__(self, client: aiohttp.ClientSession, job_ids: list[str], node_ids: list[str],
                 seed: int) -> None:
        self.client = client
        self.shown = list(job_ids)  # every job the tenant has: show_job picks one
        self.cancellable = list(job_ids)  # queued and not yet cancelled
        self.node_ids = node_ids
        self.rng = random.Random(seed)
        self.samples: list[Sample] = []
        self.started = 0.0

    def pick(self) -> tuple[str, str, str]:
        """(operation, class, the id it acts on), chosen when the request is scheduled."""
        op, kind, _ = self.rng.choices(MIX, weights=[w for *_, w in MIX])[0]
        if op == "cancel_job":
            if not self.cancellable:
                return "submit_job", "write", ""
            return op, kind, self.cancellable.pop(self.rng.randrange(len(self.cancellable)))
        if op == "show_job":
            return op, kind, self.rng.choice(self.shown)
        if op == "show_node":
            return op, kind, self.rng.choice(self.node_ids)
        return op, kind, ""

    async def call(self, op: str, ref: str) -> tuple[int, bytes]:
        """(status, body) of one request."""
        if op == "submit_job":
            status, body = await self._request("POST", "/v1/jobs", JOB)
            if status == 201:
                job_id = json.loads(body)["id"]
                self.shown.append(job_id)
                self.cancellable.append(job_id)
            return status, body
        method, path, params = {
            "show_job": ("GET", f"/v1/jobs/{ref}", None),
            "wallet": ("GET", "/v1/wallet", None),
            "show_node": ("GET", f"/v1/nodes/{ref}", None),
            "list_jobs": ("GET", "/v1/jobs", {"limit": 50}),
            "list_events": ("GET", "/v1/events", {"limit": 50}),
            "usage": ("GET", "/v1/usage", None),
            "list_nodes": ("GET", "/v1/nodes", None),
            "cancel_job": ("POST", f"/v1/jobs/{ref}/cancel", None),
        }[op]
        return await self._request(method, path, None, params)

    async def _request(self, method: str, path: str, body: object = None,
                       params: dict[str, int] | None = None) -> tuple[int, bytes]:
        async with self.client.request(method, path, json=body, params=params) as response:
            return response.status, await response.read()

    async def one(self, op: str, kind: str, ref: str, scheduled: float) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        status, error = 0, ""
        try:
            status, body = await self.call(op, ref)
            if status >= 400:
                error = f"{status} {body[:120].decode(errors='replace')}"
        except (aiohttp.ClientError, TimeoutError) as err:
            error = f"{type(err).__name__}: {err}"
        except asyncio.CancelledError:
            error = f"no answer {DRAIN_S:g} s after the run ended"
        done = loop.time()
        self.samples.append(
            Sample(op, kind, (done - scheduled) * 1000, (sent - scheduled) * 1000, status, error,
                   scheduled - self.started)
        )

    async def run(self, rate: float, duration_s: float) -> None:
        loop = asyncio.get_running_loop()
        start = self.started = loop.time() + 0.2
        pending: set[asyncio.Task[None]] = set()
        for i in range(int(rate * duration_s)):
            scheduled = start + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            op, kind, ref = self.pick()
            if len(pending) >= MAX_IN_FLIGHT:
                # The server is this far behind: shed the request (an error, no latency), as a
                # client with a bounded connection pool would, rather than queue without end.
                self.samples.append(Sample(op, kind, -1.0, 0.0, 0, SHED, scheduled - start))
                continue
            task = asyncio.create_task(self.one(op, kind, ref, scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
        # An overloaded server must not stretch the run without end: what has not answered
        # DRAIN_S after the last send counts as an error (no answer), like a timed-out client.
        if pending:
            _, late = await asyncio.wait(set(pending), timeout=DRAIN_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)


async def _drive(config: dict[str, Any]) -> list[Sample]:
    headers = {"Authorization": f"Bearer {config['token']}"}
    async with aiohttp.ClientSession(
        base_url=config["url"], headers=headers,
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
        connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT),
    ) as client:
        driver = Driver(client, config["job_ids"], config["node_ids"], config["seed"])
        await driver.run(config["rate"], config["duration_s"])
        return driver.samples


def drive_main(config_path: str) -> None:
    """The second process: reads its config, drives, writes the samples next to the config."""
    config = json.loads(Path(config_path).read_text())
    samples = asyncio.run(_drive(config))
    Path(config["samples"]).write_text(json.dumps([s.__dict__ for s in samples]))


# --- the parent: server, set-up, report -------------------------------------------------------


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A database of the bench's own on that server, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"gpucloud_load_{secrets.token_hex(4)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def set_up(url: str, admin_token: str) -> tuple[str, list[str], list[str]]:
    """A tenant with credit, one job holding every GPU, SEED_JOBS queued jobs: (token, ids)."""
    admin = httpx.Client(base_url=url, timeout=30,
                         headers={"Authorization": f"Bearer {admin_token}"})
    admin.post("/v1/tenants", json={"name": "load"}).raise_for_status()
    user = admin.post("/v1/users", json={"name": "load-admin", "tenant": "load", "role": "admin"})
    user.raise_for_status()
    topup = {"tenant": "load", "amount": "100000000", "ref": "load-credit"}
    admin.post("/v1/admin/topups", json=topup).raise_for_status()
    token: str = user.json()["token"]
    tenant = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
    nodes = tenant.get("/v1/nodes").json()["items"]
    tenant.post("/v1/jobs", json={**JOB, "gpus": 8}).raise_for_status()  # holds every GPU
    ids = [tenant.post("/v1/jobs", json=JOB).json()["id"] for _ in range(SEED_JOBS)]
    return token, ids, [n["id"] for n in nodes]


def summarise(samples: list[Sample]) -> dict[str, Any]:
    def figures(group: list[Sample]) -> dict[str, Any]:
        ms = [s.ms for s in group if s.error != SHED]
        if not ms:
            return {"requests": len(group), "p50_ms": None, "p99_ms": None, "max_ms": None,
                    "errors": len(group)}
        return {
            "requests": len(group),
            "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(percentile(ms, 0.99), 2),
            "max_ms": round(max(ms), 2),
            "errors": sum(1 for s in group if s.error),
        }

    errors: dict[str, int] = {}
    for s in samples:
        if s.error:
            key = f"{s.op}: {s.error[:80]}"
            errors[key] = errors.get(key, 0) + 1
    lags = [s.lag_ms for s in samples if s.error != SHED] or [0.0]
    return {
        "classes": {kind: figures([s for s in samples if s.kind == kind]) for kind in CLASSES},
        "operations": {op: figures([s for s in samples if s.op == op]) for op, *_ in MIX},
        "errors": sum(errors.values()),
        "shed": sum(1 for s in samples if s.error == SHED),
        "error_kinds": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:10]),
        "driver_lag_p99_ms": round(percentile(lags, 0.99), 2),
    }


def run(duration_s: float, rate: float, database_url: str | None, seed: int,
        workers: int, keep_samples: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        extra = ["--simulate-gpus", "8xH100", "--workers", str(workers)]
        with (fresh_postgres(database_url) if database_url else _none()) as db_url:
            settings: dict[str, str] = {}
            if db_url:
                extra += ["--database-url", db_url]
                settings = database_settings(db_url)
            server = start_server(data_dir, None, *extra)
            try:
                token, job_ids, node_ids = set_up(server.url, server.token)
                config_path = Path(tmp) / "driver.json"
                samples_path = Path(tmp) / "samples.json"
                config_path.write_text(json.dumps({
                    "url": server.url, "token": token, "job_ids": job_ids,
                    "node_ids": node_ids, "rate": rate, "duration_s": duration_s,
                    "seed": seed, "samples": str(samples_path),
                }))
                began = time.monotonic()
                subprocess.run([sys.executable, __file__, "--drive", str(config_path)],
                               check=True, env={**os.environ})
                wall_s = time.monotonic() - began
                healthy = httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
                samples = [Sample(**s) for s in json.loads(samples_path.read_text())]
                if keep_samples is not None:
                    keep_samples.write_text(samples_path.read_text())
            finally:
                server.stop()
                kill_job_processes(data_dir)
    report = summarise(samples)
    single_p99 = report["classes"]["single"]["p99_ms"]
    return {
        "machine": describe(),
        "database": "postgresql" if database_url else "sqlite",
        # autovacuum off (some CI images) makes every read slower as the run goes on
        "database_settings": settings,
        "workers": workers,
        "duration_s": duration_s,
        "rate_rps": rate,
        "seed": seed,
        "requests": len(samples),
        "achieved_rps": round(len(samples) / wall_s, 1),
        **report,
        "server_healthy_after": healthy,
        "target": {
            "single_p99_ms": TARGET_SINGLE_P99_MS,
            "errors": 0,
            "met": single_p99 is not None and single_p99 <= TARGET_SINGLE_P99_MS
            and report["errors"] == 0,
        },
    }


def database_settings(url: str) -> dict[str, str]:
    """The server settings gpucloud warns about (store/pg_checks.py), for the report."""
    db = Database(url)
    try:
        return server_settings(db)
    finally:
        db.dispose()


@contextmanager
def _none() -> Iterator[None]:
    yield None


def print_report(report: dict[str, Any]) -> None:
    machine = report["machine"]
    print(f"machine: {machine['cpu_model']} x{machine['cpus']}, Python {machine['python']}")
    print(f"{report['database']}, {report['workers']} API worker(s), "
          f"{report['rate_rps']:g} requests/s open-loop for "
          f"{report['duration_s']:g} s: {report['requests']} requests "
          f"({report['achieved_rps']} /s achieved), driver lag p99 "
          f"{report['driver_lag_p99_ms']} ms")
    if report["database_settings"]:
        shown = ", ".join(f"{k} = {v}" for k, v in sorted(report["database_settings"].items()))
        print(f"database server: {shown}")
        for warning in warnings_for(report["database_settings"]):
            print(f"WARNING: {warning}")
    print(f"{'class':<14}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    rows = [*report["classes"].items(), ("", None), *report["operations"].items()]
    for name, f in rows:
        if f is None:
            continue
        print(f"{name:<14}{f['requests']:>9}{f['p50_ms']!s:>9}{f['p99_ms']!s:>9}"
              f"{f['max_ms']!s:>9}{f['errors']:>8}")
    print(f"errors: {report['errors']}")
    for kind, count in report["error_kinds"].items():
        print(f"  {count} x {kind}")
    target = report["target"]
    print(f"target p99 <= {target['single_p99_ms']:g} ms for single-object calls, 0 errors: "
          f"{'met' if target['met'] else 'NOT met'}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--drive":
        drive_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ci", action="store_true", help=f"{CI_S:g} s instead of {FULL_S:g} s")
    parser.add_argument("--duration", type=float, help="seconds of load (overrides --ci)")
    parser.add_argument("--rate", type=float, default=RATE, help="requests per second")
    parser.add_argument("--database-url", help="a PostgreSQL server (SQLAlchemy URL): the "
                        "bench makes a database of its own there, and drops it afterwards")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--samples", type=Path, help="also write every request's figures "
                        "(JSON) here")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help="gpucloud up --workers: API processes on the port")
    args = parser.parse_args()
    duration = args.duration or (CI_S if args.ci else FULL_S)
    report = run(duration, args.rate, args.database_url, args.seed, args.workers,
                 args.samples)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
