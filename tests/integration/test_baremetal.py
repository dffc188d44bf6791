"""Bare metal against a real Redfish BMC (``sushy-emulator --fake``, one emulated system per
server): a whole lease whose power really changes at the BMC, billed per server-hour; a leased
server gets no jobs; a failed step sends the server to maintenance with the reason; leasing is
admitted on funds; another tenant gets 404; the BMC password shows up nowhere.

The control plane runs on a manual clock (billing is exact), while the emulator takes real
seconds to apply power changes: ``drive`` advances one while waiting for the other."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpucloud.store.db import Database
from gpucloud.store.models import Event
from gpucloud.store.models_fleet import BmcCredential, WipeAttestation
from tests.billing_api import bearer, priced_api, submit, tenant, wallet
from tests.fakes import gpu_node
from tests.harness import Harness, make_harness
from tests.redfish_emulator import PASSWORD, USER, Emulator, available, emulator
from tests.servers import free_port

MODEL = "BM-H100"  # the server model the price book prices per server-hour


@pytest.fixture(scope="module")
def bmc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    why = available()
    if why is not None:
        pytest.skip(why)
    with emulator(tmp_path_factory.mktemp("bmc"), ["gpu-a02", "gpu-b01"]) as found:
        yield found


def setup(h: Harness, bmc: Emulator, servers: dict[str, tuple[str, str]]) -> TestClient:
    """The register's bare-metal servers (name -> BMC address, password), their price at
    3600.00 a server-hour (1.00 a second), an OS image and the wipe image."""
    api = priced_api(h)  # also: the admission runway is 10 s
    admin = bearer(h.admin_token)
    records = [{"line": i + 1, "kind": "server", "values": {
        "name": name, "role": "ai", "model": MODEL, "hostname": name, "accelerators": "8xH100",
        "cpus": 112, "memory_gib": 2048, "disks": "8x3.84T nvme", "bmc": address,
        "baremetal": True}} for i, (name, (address, _)) in enumerate(servers.items())]
    answer = api.post("/v1/assets/import", headers=admin, json={"assets": records})
    assert answer.status_code == 200, answer.text
    for name, (_, password) in servers.items():
        answer = api.put(f"/v1/assets/{name}/bmc-credentials", headers=admin,
                         json={"username": USER, "password": password})
        assert answer.status_code == 200, answer.text
        assert PASSWORD not in answer.text
    api.post("/v1/prices", headers=admin, json={"server": MODEL, "server_hour": "3600"}
             ).raise_for_status()
    for name, purpose in (("ubuntu", "os"), ("wipe", "wipe")):
        api.put(f"/v1/baremetal/images/{name}", headers=admin,
                json={"url": f"{bmc.images}/{name}.iso", "purpose": purpose}).raise_for_status()
    return api


def states(api: TestClient, h: Harness) -> dict[str, dict[str, Any]]:
    listed = api.get("/v1/baremetal/servers", headers=bearer(h.admin_token),
                     params={"all": True}).json()["items"]
    return {s["name"]: s for s in listed}


def drive(h: Harness, done: Callable[[], bool], what: str, timeout: float = 45.0) -> None:
    """Control-plane passes, a second of the manual clock each, until ``done``."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        h.clock.advance(1)
        h.settle(1)
        time.sleep(0.2)


def wait_real(done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


def wipe(h: Harness, api: TestClient, bmc: Emulator, server: str,
         still: Callable[[], bool]) -> None:
    """Released: the media is ejected, then the wipe image boots; it powers the server off
    when done (played here by the test), and the server is available again. ``still`` holds
    all along."""
    drive(h, lambda: states(api, h)[server]["state"] == "cleaning", "cleaning to begin")
    drive(h, lambda: bmc.power_on(server), "the wipe image to boot")
    assert bmc.media(server).endswith("/wipe.iso")
    drive(h, lambda: states(api, h)[server]["wipe_started_at"] is not None,
          "the controller to see the wipe running")
    assert states(api, h)[server]["state"] == "cleaning"
    assert still()
    bmc.force_off(server)  # what the wipe image does once the disks are erased
    drive(h, lambda: states(api, h)[server]["state"] == "available", "the server back")


def reimage(h: Harness, api: TestClient, bmc: Emulator, path: str, token: str) -> None:
    """Another image on the leased server: a reset at the BMC, then leased again."""
    api.put("/v1/baremetal/images/rocky", headers=bearer(h.admin_token),
            json={"url": f"{bmc.images}/rocky.iso"}).raise_for_status()
    again = api.post(path + "/reimage", headers=bearer(token), json={"image": "rocky"})
    assert again.status_code == 200 and again.json()["state"] == "provisioning", again.text
    drive(h, lambda: api.get(path, headers=bearer(token)).json()["state"] == "leased",
          "the reimage (a reset, booting the new image)")
    assert bmc.media("gpu-a02").endswith("/rocky.iso") and bmc.power_on("gpu-a02")


def hidden_from(api: TestClient, path: str, other: str) -> None:
    """Another tenant sees nothing of the lease and can do nothing to it."""
    assert api.get(path, headers=bearer(other)).status_code == 404
    for action, body in (("/release", None), ("/power", {"action": "off"}),
                         ("/reimage", {})):
        assert api.post(path + action, headers=bearer(other), json=body).status_code == 404
    assert api.get("/v1/baremetal/leases", headers=bearer(other)).json()["items"] == []


def test_a_whole_lease_at_a_real_bmc_billed_by_the_hour_with_no_jobs_on_it(
        db: Database, bmc: Emulator) -> None:
    h = make_harness(db, nodes=[gpu_node("gpu-a02")])
    api = setup(h, bmc, {"gpu-a02": (bmc.address("gpu-a02"), PASSWORD)})
    acme, beta = tenant(api, h, "acme", "1000"), tenant(api, h, "beta", "1000")
    assert not bmc.power_on("gpu-a02")

    free = api.get("/v1/baremetal/servers", headers=bearer(acme)).json()["items"]
    assert [(s["name"], s["price_per_hour"], s["accelerators"]) for s in free] == [
        ("gpu-a02", "3600.00", "8xH100")]
    answer = api.post("/v1/baremetal/leases", headers=bearer(acme),
                      json={"model": MODEL, "image": "ubuntu"})
    assert answer.status_code == 201, answer.text
    lease = answer.json()
    assert (lease["server"], lease["state"]) == ("gpu-a02", "provisioning")
    path = f"/v1/baremetal/leases/{lease['id']}"

    hidden_from(api, path, beta)
    # and its jobs do not land on the server while it is held
    job = submit(api, beta, gpus=1)
    h.settle()

    drive(h, lambda: api.get(path, headers=bearer(acme)).json()["state"] == "leased",
          "the server to be provisioned")
    assert bmc.power_on("gpu-a02")  # powered on at the BMC, booting the image
    assert bmc.media("gpu-a02").endswith("/ubuntu.iso")
    shown = api.get(path, headers=bearer(acme)).json()
    assert shown["power"] == "on" and shown["leased_at"] is not None
    h.settle()
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(beta)).json()["state"] == "QUEUED"

    reimage(h, api, bmc, path, acme)

    h.clock.advance(100)  # and 100 s more, at 1.00 a second
    h.settle(1)
    off = api.post(path + "/power", headers=bearer(acme), json={"action": "off"})
    assert off.status_code == 200, off.text
    wait_real(lambda: not bmc.power_on("gpu-a02"), "the BMC to power the server off")
    released = api.post(path + "/release", headers=bearer(acme))
    assert released.status_code == 200 and released.json()["state"] == "ended"
    assert api.post(path + "/release", headers=bearer(acme)).status_code == 200  # idempotent
    h.settle(2)
    ended = api.get(path, headers=bearer(acme)).json()
    seconds = int((datetime.fromisoformat(ended["ended_at"])
                   - datetime.fromisoformat(ended["leased_at"])).total_seconds())
    assert seconds >= 100  # provisioned, reimaged (still paid: the tenant's choice), held
    assert ended["charged"] == f"{seconds}.00"  # every second leased, once, exactly
    assert wallet(api, acme)["balance"] == f"{1000 - seconds}.00"

    wipe(h, api, bmc, "gpu-a02", lambda: api.get(
        f"/v1/jobs/{job['id']}", headers=bearer(beta)).json()["state"] == "QUEUED")
    with db.read() as session:
        attestation = session.scalars(select(WipeAttestation)).one()
    assert attestation.outcome == "erased" and attestation.tenant_id is not None
    assert "wipe" in attestation.detail and attestation.started_at <= attestation.finished_at

    h.settle()  # free again: now the queued job may land there
    placed = api.get(f"/v1/jobs/{job['id']}", headers=bearer(beta)).json()
    assert placed["state"] != "QUEUED" and placed["node_id"] == "gpu-a02"
    assert api.get(path, headers=bearer(acme)).json()["charged"] == f"{seconds}.00"  # no more
    report = api.get("/v1/fleet/report", headers=bearer(h.admin_token), params={"days": 1})
    row = next(r for r in report.json()["rows"] if r["asset"] == "gpu-a02")
    assert row["revenue_per_day"] == f"{seconds}.00"  # the lease's revenue is the server's


def test_a_failed_step_goes_to_maintenance_and_the_password_is_never_shown(
        db: Database, bmc: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    h = make_harness(db, nodes=[gpu_node("gpu-b01")])
    api = setup(h, bmc, {"gpu-b01": (bmc.address("gpu-b01"), "wrong-" + PASSWORD),
                         "gpu-c01": (closed, PASSWORD)})
    acme = tenant(api, h, "acme", "1000")
    leases = {}
    for server in ("gpu-b01", "gpu-c01"):
        answer = api.post("/v1/baremetal/leases", headers=bearer(acme), json={"server": server})
        assert answer.status_code == 201, answer.text  # the only OS image is taken
        leases[server] = answer.json()["id"]
    drive(h, lambda: all(s["state"] == "maintenance" for s in states(api, h).values()),
          "both servers to go to maintenance")
    shown = states(api, h)
    assert "refused the login" in shown["gpu-b01"]["reason"]
    assert "provisioning" in shown["gpu-b01"]["reason"]
    assert "does not answer" in shown["gpu-c01"]["reason"]
    for lease_id in leases.values():
        lease = api.get(f"/v1/baremetal/leases/{lease_id}", headers=bearer(acme)).json()
        assert lease["state"] == "ended" and lease["reason"].startswith("failed")
        assert "127.0.0.1" not in lease["reason"]  # the operator's reason has the details
        assert lease["charged"] == "0.00" and lease["leased_at"] is None
    assert not bmc.power_on("gpu-b01")  # nothing was done at the BMC that refused
    refused = api.post("/v1/baremetal/leases", headers=bearer(acme), json={"server": "gpu-b01"})
    assert refused.status_code == 409 and "maintenance" in refused.json()["detail"]

    # returned by an operator: it is wiped first, which fails again with the same login
    back = api.post("/v1/baremetal/servers/gpu-b01/return", headers=bearer(h.admin_token))
    assert back.status_code == 200 and back.json()["state"] == "cleaning"
    drive(h, lambda: states(api, h)["gpu-b01"]["state"] == "maintenance", "the wipe to fail")
    with db.read() as session:
        failed = session.scalars(select(WipeAttestation)).one()
        messages = " ".join(f"{e.message} {e.reason}" for e in session.scalars(select(Event)))
        at_rest = " ".join(c.password for c in session.scalars(select(BmcCredential)))
    assert at_rest.startswith("sealed:v1:")  # encrypted in the database, not in clear
    assert failed.outcome == "failed" and "refused the login" in failed.detail
    asset = api.get("/v1/assets/gpu-b01", headers=bearer(h.admin_token)).text
    metrics = api.get("/metrics", headers=bearer(h.admin_token)).text  # Prometheus' text format
    assert 'gpucloud_baremetal_servers{state="maintenance"} 2.0' in metrics
    assert 'gpucloud_baremetal_servers{state="available"} 0.0' in metrics
    for text in (caplog.text, messages, asset, str(shown), at_rest):
        assert PASSWORD not in text


def test_leasing_is_admitted_on_funds_and_refused_with_what_to_fix(
        db: Database, bmc: Emulator) -> None:
    h = make_harness(db, nodes=[gpu_node("gpu-a02")])
    api = setup(h, bmc, {"gpu-a02": (bmc.address("gpu-a02"), PASSWORD)})
    poor = tenant(api, h, "poor", "1.50")
    answer = api.post("/v1/baremetal/leases", headers=bearer(poor), json={"server": "gpu-a02"})
    # 10 s of runway at 1.00 a second: 10.00 needed, 1.50 there
    assert answer.status_code == 402, answer.text
    assert "top up at least 8.50" in answer.json()["detail"]
    assert states(api, h)["gpu-a02"]["state"] == "available"  # nothing changed
    for body, status, words in (
            ({"model": "nope"}, 422, "no bare-metal server of model 'nope'"),
            ({}, 422, "name a server"),
            ({"server": "gpu-a02", "image": "windows"}, 422, "no OS image 'windows'")):
        answer = api.post("/v1/baremetal/leases", headers=bearer(poor), json=body)
        assert answer.status_code == status and words in answer.json()["detail"], answer.text
    # a server running jobs is not free to lease whole
    rich = tenant(api, h, "rich", "1000")
    job = submit(api, rich, gpus=1)
    h.settle()
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(rich)).json()["node_id"] == "gpu-a02"
    busy = api.post("/v1/baremetal/leases", headers=bearer(rich), json={"server": "gpu-a02"})
    assert busy.status_code == 409 and "running jobs" in busy.json()["detail"]
    assert api.get("/v1/baremetal/servers", headers=bearer(rich)).json()["items"] == []
    # an operator takes it out of service: no tenant sees it, nobody leases it
    admin = bearer(h.admin_token)
    out = api.post("/v1/baremetal/servers/gpu-a02/maintenance", headers=admin,
                   json={"reason": "fan noise"})
    assert out.status_code == 200 and out.json()["state"] == "maintenance"
    assert "fan noise" in out.json()["reason"]
    assert api.get("/v1/baremetal/servers", headers=bearer(poor)).json()["items"] == []
    assert api.post("/v1/baremetal/servers/gpu-a02/maintenance", headers=bearer(poor),
                    json={"reason": "x"}).status_code == 403
    refused = api.post("/v1/baremetal/leases", headers=bearer(rich), json={"model": MODEL})
    assert refused.status_code == 409 and "maintenance" in refused.json()["detail"]
