"""Ledger throughput and metering drift.

1. Postings per second written through ``store.ledger.post`` in batches (one database
   transaction per batch of ledger transactions, two postings each), on SQLite and PostgreSQL.
2. Metering drift: 100 concurrent jobs run for --seconds on the wall clock under the real
   control loop (admission, scheduler, launcher, metering; the engine is the in-memory fake so
   that 100 jobs fit on this machine); every second we sample, per job, seconds run minus
   seconds charged, and at the end the difference after the final charge.

    python bench/ledger.py [--transactions 100000] [--batch 1000] [--seconds 20] [--json]
                           [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakes import gpu_node
from tests.harness import make_harness

from bench.machine import describe
from gpucloud.billing.ledger import (
    AccountKind,
    LedgerTx,
    TxKind,
    move,
    system_account,
    wallet_account,
)
from gpucloud.billing.money import Money
from gpucloud.controllers.context import Tunables
from gpucloud.core.clock import SystemClock
from gpucloud.core.jobspec import parse_job_spec
from gpucloud.core.tenancy import Principal, Role
from gpucloud.store import ledger, migrate
from gpucloud.store.accounts import create_tenant, create_user
from gpucloud.store.billing import topup
from gpucloud.store.db import Database, sqlite_url
from gpucloud.store.jobs import create_job
from gpucloud.store.models import Allocation, AllocationMeter, Job

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def postings_per_second(db: Database, transactions: int, batch: int) -> float:
    wallets = [wallet_account(f"tnt_{i}", "CNY") for i in range(100)]
    revenue = system_account(AccountKind.REVENUE, "CNY")
    with db.write() as session:
        ledger.ensure_accounts(session, [*wallets, revenue], NOW)
    run = secrets.token_hex(4)
    batches = [
        [LedgerTx(f"bench:{run}:{i}", TxKind.CHARGE, move(wallets[i % 100], revenue, 7))
         for i in range(first, min(first + batch, transactions))]
        for first in range(0, transactions, batch)
    ]
    start = time.perf_counter()  # the writes only: building the objects is the caller's work
    for txs in batches:
        with db.write() as session:
            ledger.post(session, txs, NOW)
    elapsed = time.perf_counter() - start
    return 2 * transactions / elapsed


def with_postgres(admin_url: str, body: Any) -> Any:
    name = f"gpucloud_bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        db = Database(make_url(admin_url).set(database=name).render_as_string(False))
        migrate.upgrade(db)
        try:
            return body(db)
        finally:
            db.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def metering_drift(jobs: int, seconds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(sqlite_url(Path(tmp)))
        migrate.upgrade(db)
        h = make_harness(db, clock=SystemClock(),  # type: ignore[arg-type]
                         nodes=[gpu_node(gpus=8, cpu_milli=jobs * 1000)],
                         tunables=Tunables(inventory_interval_s=5, queue_window=256))
        now = h.clock.now()
        with db.write() as session:
            tenant = create_tenant(session, h.ctx.ids, "bench", now)
            user = create_user(session, h.ctx.ids, tenant, "bench-u", Role.MEMBER, now)
            topup(session, tenant.id, Money(10**12, "CNY"), "bench", "bench", now)
            who = Principal(user.id, user.name, tenant.id, "bench", Role.MEMBER, False)
            spec = parse_job_spec({"command": ["x"], "cpus": 1, "memory": "1M"})
            ids = [create_job(session, h.ctx.ids, who, spec, now).id for _ in range(jobs)]
        h.loop.tick_s = 0.2
        h.loop.start()
        lags: list[float] = []
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(1)
                lags += sampled_lag(db)
            for job_id in ids:
                h.engine.exit(job_id, 0)
            wait_until_final(db, jobs)
        finally:
            h.loop.stop()
        final = final_drift(db)
        db.dispose()
    return {"jobs": jobs, "samples": len(lags), "max_lag_s": max(lags, default=0.0),
            "mean_lag_s": sum(lags) / max(1, len(lags)), "max_final_drift_s": max(final)}


def sampled_lag(db: Database) -> list[float]:
    now = datetime.now(UTC)
    with db.read() as session:
        rows = session.execute(select(Allocation.started_at, AllocationMeter.metered_seconds)
                               .join(AllocationMeter,
                                     AllocationMeter.allocation_id == Allocation.id)
                               .where(Allocation.active))
        return [(now - started).total_seconds() - metered for started, metered in rows]


def wait_until_final(db: Database, jobs: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with db.read() as session:
            done = len(session.scalars(select(AllocationMeter.allocation_id)
                                       .where(AllocationMeter.final)).all())
        if done == jobs:
            return
        time.sleep(0.2)
    raise RuntimeError("meters did not close")


def final_drift(db: Database) -> list[float]:
    with db.read() as session:
        rows = session.execute(select(Job.started_at, Job.ended_at,
                                      AllocationMeter.metered_seconds)
                               .join(AllocationMeter, AllocationMeter.job_id == Job.id))
        return [abs(int((end - start).total_seconds()) - metered) for start, end, metered in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": describe(), "transactions": args.transactions,
                              "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(sqlite_url(Path(tmp)))
        migrate.upgrade(db)
        report["sqlite_postings_per_s"] = round(postings_per_second(db, args.transactions,
                                                                    args.batch))
        db.dispose()
    if not args.no_postgres:
        report["postgres_postings_per_s"] = round(with_postgres(
            args.pg_url, lambda db: postings_per_second(db, args.transactions, args.batch)))
    report["metering"] = metering_drift(args.jobs, args.seconds)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["machine"]
    print(f"machine: {m['cpu_model']} x{m['cpus']}, Python {m['python']}")
    print(f"ledger: {args.transactions} transactions of 2 postings, {args.batch} per commit")
    print(f"  SQLite      {report['sqlite_postings_per_s']:>10,} postings/s  (target 50,000)")
    if "postgres_postings_per_s" in report:
        print(f"  PostgreSQL  {report['postgres_postings_per_s']:>10,} postings/s  "
              "(target 20,000)")
    d = report["metering"]
    print(f"metering: {d['jobs']} concurrent jobs for {args.seconds}s, {d['samples']} samples")
    print(f"  lag while running: max {d['max_lag_s']:.2f}s, mean {d['mean_lag_s']:.2f}s; "
          f"after the final charge: max {d['max_final_drift_s']:.0f}s  (target <= 1 s)")


if __name__ == "__main__":
    main()
