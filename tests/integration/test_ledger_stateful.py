"""A hypothesis state machine drives billing with random top-ups, jobs, price changes, crashes
and replayed idempotency keys, and checks it against a simple model after every step."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import select

from gpucloud.billing.money import Money
from gpucloud.billing.pricing import PriceVersion
from gpucloud.core.jobspec import parse_job_spec
from gpucloud.core.states import JobState
from gpucloud.core.tenancy import Principal, Role
from gpucloud.store import ledger, migrate
from gpucloud.store.accounts import create_tenant, create_user
from gpucloud.store.billing import holdings, topup
from gpucloud.store.db import Database, sqlite_url
from gpucloud.store.jobs import create_job
from gpucloud.store.models import AllocationMeter, Job
from gpucloud.store.prices import add_version, latest_version_number, load_versions
from gpucloud.store.settings import set_setting
from tests.fakes import gpu_node
from tests.harness import Harness, make_harness

TENANTS = ("ta", "tb")


class Billing(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        self.db = Database(sqlite_url(self.dir))
        migrate.upgrade(self.db)
        self.h: Harness = make_harness(self.db, nodes=[gpu_node(gpus=8, cpu_milli=64000)])
        self.who: dict[str, Principal] = {}
        self.topped: dict[str, int] = dict.fromkeys(TENANTS, 0)
        self.refs: set[tuple[str, str]] = set()
        self.prices: list[tuple[datetime, int]] = []  # (effective from, H100 minor per hour)
        with self.db.write() as session:
            now = self.h.clock.now()
            set_setting(session, "billing.admission_runway_seconds", "0", now)
            for name in TENANTS:
                tenant = create_tenant(session, self.h.ctx.ids, name, now)
                user = create_user(session, self.h.ctx.ids, tenant, f"{name}-u", Role.MEMBER,
                                   now)
                self.who[name] = Principal(user.id, user.name, tenant.id, name, Role.MEMBER,
                                           False)
        self._set_price(3600)

    def teardown(self) -> None:
        self.db.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _set_price(self, minor_per_hour: int) -> None:
        now = self.h.clock.now()
        with self.db.write() as session:
            base = load_versions(session)[-1]
            version = PriceVersion(latest_version_number(session) + 1, now, "CNY",
                                   {**base.gpu_hour, "H100": minor_per_hour})
            add_version(session, version, "test", now)
        self.prices.append((now, minor_per_hour))

    def _price_at(self, at: datetime) -> int:
        return [p for since, p in self.prices if since <= at][-1]

    @rule(tenant=st.sampled_from(TENANTS), amount=st.integers(1, 50_000),
          ref=st.sampled_from(["r1", "r2", "r3", "r4"]))
    def top_up(self, tenant: str, amount: int, ref: str) -> None:
        with self.db.write() as session:
            written = topup(session, self.who[tenant].tenant_id, Money(amount, "CNY"), ref,
                            "test", self.h.clock.now())
        assert written == ((tenant, ref) not in self.refs)  # a replayed ref changes nothing
        if written:
            self.refs.add((tenant, ref))
            self.topped[tenant] += amount

    @rule(tenant=st.sampled_from(TENANTS), gpus=st.integers(1, 3))
    def submit(self, tenant: str, gpus: int) -> None:
        with self.db.write() as session:
            spec = parse_job_spec({"command": ["x"], "gpus": gpus, "gpu_type": "H100",
                                   "cpus": 0.1, "memory": "1M"})
            create_job(session, self.h.ctx.ids, self.who[tenant], spec, self.h.clock.now())
        self.h.settle(1)

    @rule(seconds=st.integers(1, 7))
    def time_passes(self, seconds: int) -> None:
        for _ in range(seconds):
            self.h.clock.advance(1)
            self.h.settle(1)

    @rule(price=st.integers(0, 400).map(lambda k: k * 36))
    def change_price(self, price: int) -> None:
        self.h.clock.advance(0.4)  # prices change between whole seconds of a job, too
        self._set_price(price)

    @precondition(lambda self: bool(self.h.engine.runs))
    @rule(data=st.data())
    def a_job_ends(self, data: st.DataObject) -> None:
        running = [r for r in self.h.engine.runs.values() if r.exit_code is None]
        if running:
            run = data.draw(st.sampled_from(running))
            self.h.engine.exit(run.spec.job_id, 0)
            self.h.settle(1)

    @rule()
    def control_plane_restarts(self) -> None:
        self.h = self.h.restart()
        self.h.settle(1)

    @invariant()
    def ledger_is_consistent(self) -> None:
        with self.db.read() as session:
            assert ledger.verify(session) == []

    @invariant()
    def wallets_are_top_ups_minus_charges(self) -> None:
        with self.db.read() as session:
            for name in TENANTS:
                tenant_id = self.who[name].tenant_id
                charged = sum(m.charged_minor for m in session.scalars(
                    select(AllocationMeter).where(AllocationMeter.tenant_id == tenant_id)))
                assert holdings(session, tenant_id).money_minor == self.topped[name] - charged

    @invariant()
    def every_second_is_charged_once_at_its_price(self) -> None:
        now = self.h.clock.now()
        with self.db.read() as session:
            for meter in session.scalars(select(AllocationMeter)):
                job = session.get_one(Job, meter.job_id)
                end = job.ended_at if job.ended_at is not None else now
                ran = int((end - meter.started_at).total_seconds())
                if meter.final:
                    assert JobState(job.state).terminal and meter.metered_seconds == ran
                else:
                    assert meter.metered_seconds <= ran  # never ahead of the clock
                exact = sum(self._price_at(meter.started_at + timedelta(seconds=s))
                            for s in range(meter.metered_seconds)) * meter.gpus
                assert meter.charged_minor == exact // 3600


Billing.TestCase.settings = settings(max_examples=15, stateful_step_count=25, deadline=None)
TestBilling = Billing.TestCase
