"""Metered leases charged by the controller, on real SQLite and PostgreSQL: exact, once, and
settled when they end; visible in /v1/usage; a wallet pushed below zero is told once."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpucloud.billing.leases import LeaseKind
from gpucloud.controllers.lease_metering import LeaseMeteringController
from gpucloud.store.db import Database
from gpucloud.store.leases import (
    end_leases,
    open_lease,
    open_lease_of,
    resize_lease,
    tenants_in_debt,
)
from gpucloud.store.models import Event, MeteredLease, Tenant
from tests.billing_api import bearer, priced_api, run_for, tenant, wallet
from tests.fakes import gpu_node
from tests.harness import Harness, make_harness


@pytest.fixture
def h(db: Database) -> Harness:
    return make_harness(db, nodes=[gpu_node(gpus=8)])


@pytest.fixture
def api(h: Harness) -> TestClient:
    client = priced_api(h)
    # 8xH100 servers at 3600.00 an hour (1.00 a second); storage at 25,920.00 per GiB-month
    # (0.01 per GiB-second), so that every second is a whole minor unit the test can count.
    client.post("/v1/prices", headers=bearer(h.admin_token),
                json={"server": "8xH100", "server_hour": "3600.00",
                      "storage_gib_month": "25920.00"}).raise_for_status()
    return client


def _tenant_id(h: Harness, name: str) -> str:
    with h.ctx.db.read() as session:
        return session.scalars(select(Tenant.id).where(Tenant.name == name)).one()


def _open(h: Harness, tenant_id: str, kind: LeaseKind, ref: str, item: str, qty: int) -> str:
    with h.ctx.db.write() as session:
        lease = open_lease(session, lease_id=h.ctx.ids.new("lse", h.clock.now()),
                           tenant_id=tenant_id, kind=kind, ref_id=ref, item=item,
                           quantity=qty, at=h.clock.now())
        return lease.id


def test_a_server_and_a_volume_are_charged_each_second_exactly_once(
        h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "100")
    acme = _tenant_id(h, "acme")
    _open(h, acme, LeaseKind.SERVER, "srv_1", "8xH100", 1)
    _open(h, acme, LeaseKind.STORAGE, "vol_1", "", 2)  # 2 GiB: 0.02 a second
    run_for(h, 10)
    LeaseMeteringController(h.ctx).reconcile_once()  # a second pass in the same second: nothing
    with h.ctx.db.write() as session:
        end_leases(session, "srv_1", h.clock.now())
        end_leases(session, "vol_1", h.clock.now())
    run_for(h, 5)  # ended: settled at the end, nothing more
    assert wallet(api, token)["balance"] == f"{100 - 10 * 1 - 10 * 0.02:.2f}"
    rows = api.get("/v1/usage", headers=bearer(token)).json()
    assert sorted((r["kind"], r["ref_id"], r["quantity"], r["seconds"], r["cost"])
                  for r in rows) == [("server", "srv_1", 1, 10, "10.00"),
                                     ("storage", "vol_1", 2, 10, "0.20")]
    with h.ctx.db.read() as session:
        assert all(lease.settled for lease in session.scalars(select(MeteredLease)))
    report = api.get("/v1/admin/ledger/verify", headers=bearer(h.admin_token)).json()
    assert report["ok"], report


def test_a_restarted_meter_neither_skips_nor_repeats_a_second(
        h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "100")
    _open(h, _tenant_id(h, "acme"), LeaseKind.SERVER, "srv_1", "8xH100", 1)
    run_for(h, 4)
    restarted = h.restart()
    run_for(restarted, 3)
    assert wallet(api, token)["balance"] == "93.00"


def test_resizing_charges_the_new_quantity_from_then_on(h: Harness, api: TestClient) -> None:
    token = tenant(api, h, "acme", "100")
    _open(h, _tenant_id(h, "acme"), LeaseKind.STORAGE, "vol_1", "", 10)  # 0.10 a second
    run_for(h, 5)
    with h.ctx.db.write() as session:
        resize_lease(session, lease_id=h.ctx.ids.new("lse", h.clock.now()), ref_id="vol_1",
                     quantity=20, at=h.clock.now())
        current = open_lease_of(session, "vol_1")
        assert current is not None and current.quantity == 20
    run_for(h, 5)
    assert wallet(api, token)["balance"] == f"{100 - 5 * 0.10 - 5 * 0.20:.2f}"


def test_a_lease_that_empties_the_wallet_tells_the_tenant_once(
        h: Harness, api: TestClient) -> None:
    tenant(api, h, "acme", "3")
    acme = _tenant_id(h, "acme")
    _open(h, acme, LeaseKind.SERVER, "srv_1", "8xH100", 1)
    run_for(h, 6)
    with h.ctx.db.read() as session:
        assert tenants_in_debt(session) == {acme}
        told = session.scalars(select(Event).where(Event.kind == "wallet.in_debt")).all()
    assert [e.object_id for e in told] == [acme]


def test_the_operators_own_leases_are_not_charged(h: Harness, api: TestClient) -> None:
    with h.ctx.db.read() as session:
        operator = session.scalars(select(Tenant.id).where(Tenant.is_operator)).one()
    _open(h, operator, LeaseKind.SERVER, "srv_op", "8xH100", 1)
    run_for(h, 3)
    with h.ctx.db.read() as session:
        lease = session.scalars(select(MeteredLease)).one()
    assert lease.charged_minor == 0 and lease.charged_until == lease.started_at
