"""The asset register through the API: import (validated, idempotent), show, update, retire;
its topology reaches the scheduler; the fleet report sets cost against revenue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from gpucloud.fleet_import import read_file
from gpucloud.store.db import Database
from gpucloud.store.models_fleet import Asset
from gpucloud.store.scheduling_input import scheduling_input
from tests.billing_api import bearer, priced_api, run_for, submit, tenant
from tests.fakes import gpu_node
from tests.harness import Harness, make_harness

EXAMPLES = Path(__file__).parents[2] / "examples" / "fleet"


def records(name: str) -> list[dict[str, Any]]:
    return [{"line": r.line, "kind": r.kind, "values": dict(r.values)}
            for r in read_file(EXAMPLES / name)]


def import_file(api: TestClient, h: Harness, name: str) -> dict[str, Any]:
    answer = api.post("/v1/assets/import", headers=bearer(h.admin_token),
                      json={"assets": records(name)})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_import_is_idempotent_and_a_bad_file_changes_nothing(db: Database) -> None:
    h = make_harness(db)
    api = h.api()
    first = import_file(api, h, "fleet.yaml")
    assert sorted(first["created"]) == ["gpu-a01", "gpu-a02", "leaf-1", "spine-1", "store-1"]
    again = import_file(api, h, "fleet.yaml")
    assert again["created"] == [] and again["updated"] == []
    assert len(again["unchanged"]) == 5
    bad = [{"line": 3, "kind": "server", "values": {"name": "gpu-a01", "rack": "r9"}},
           {"line": 9, "kind": "server", "values": {"name": "gpu-b01", "accelerators": "8xH100",
                                                    "serial": "SM-A02-0002"}},
           {"line": 12, "kind": "switch", "values": {"name": "leaf-9", "fabric": "ethernet",
                                                     "links": ["1:nowhere"]}}]
    refused = api.post("/v1/assets/import", headers=bearer(h.admin_token),
                       json={"assets": bad})
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "line 12: leaf-9: links: port 1 links to 'nowhere'" in detail
    with db.read() as session:
        assert session.query(Asset).count() == 5
        a01 = session.query(Asset).filter_by(name="gpu-a01").one()
        assert a01.rack == "r1"  # the good record of the refused file was not applied
    refused = api.post("/v1/assets/import", headers=bearer(h.admin_token),
                       json={"assets": bad[1:2]})
    assert "serial 'SM-A02-0002' is already registered to gpu-a02" in refused.json()["detail"]
    changed = import_file(api, h, "fleet.csv")
    assert sorted(changed["created"]) == ["cpu-01", "edge-01", "tor-e1"]


def test_show_update_retire_and_only_operators_see_the_register(db: Database) -> None:
    h = make_harness(db)
    api = h.api()
    admin = bearer(h.admin_token)
    import_file(api, h, "fleet.yaml")
    shown = api.get("/v1/assets/leaf-1", headers=admin).json()
    assert [(x["port"], x["peer"]) for x in shown["links"]] == [
        (1, "gpu-a01"), (2, "gpu-a02"), (3, "store-1"), (63, "spine-1")]
    a01 = api.get("/v1/assets/gpu-a01", headers=admin).json()
    assert a01["accelerators"] == "8xH100" and a01["purchase_cost"] == "2400000.00"
    assert a01["disks"] == ["8x3932G nvme", "2x960G ssd"]
    moved = api.patch("/v1/assets/gpu-a01", headers=admin,
                      json={"values": {"rack": "r2", "position": 12}})
    assert moved.status_code == 200 and moved.json()["rack"] == "r2"
    assert moved.json()["purchase_cost"] == "2400000.00"  # the rest is kept
    wrong = api.patch("/v1/assets/gpu-a01", headers=admin, json={"values": {"cpus": -1}})
    assert wrong.status_code == 422 and "cpus: must be between 0" in wrong.json()["detail"]
    assert api.get("/v1/assets/gpu-a01", headers=admin).json()["cpus"] == 112
    retired = api.post("/v1/assets/spine-1/retire", headers=admin, json={"reason": "sold"})
    assert retired.json()["retired_at"] is not None
    listed = api.get("/v1/assets", headers=admin).json()["items"]
    assert "spine-1" not in [a["name"] for a in listed]
    assert all(x["peer"] != "spine-1"
               for x in api.get("/v1/assets/leaf-1", headers=admin).json()["links"])
    everything = api.get("/v1/assets", headers=admin, params={"retired": True}).json()["items"]
    assert "spine-1" in [a["name"] for a in everything]
    member = tenant(api, h, "acme", None)
    for answer in (api.get("/v1/assets", headers=bearer(member)),
                   api.get("/v1/assets/gpu-a01", headers=bearer(member)),
                   api.get("/v1/fleet/report", headers=bearer(member)),
                   api.post("/v1/assets/import", headers=bearer(member), json={"assets": []})):
        assert answer.status_code == 403
    assert api.get("/v1/assets/nope", headers=admin).status_code == 404


def test_the_register_places_engine_nodes_in_the_fabric_for_the_scheduler(db: Database) -> None:
    # The engine names its nodes by hostname and labels them with nothing useful.
    h = make_harness(db, nodes=[gpu_node("gpu-a01"), gpu_node("gpu-a02"), gpu_node("other")])
    api = h.api()
    import_file(api, h, "fleet.yaml")
    submit_one = submit(priced_api(h), tenant(api, h, "acme", "1000"), gpus=8, nodes=3)
    assert submit_one["id"]
    admission = next(c for c in h.loop.controllers if c.name == "admission")
    admission.reconcile_once()  # QUEUED, not yet placed: what the scheduler's next pass reads
    with db.read() as session:
        view = scheduling_input(session, 16, h.clock.now())
    assert view is not None
    topology = {n.name: n.topology for n in view.snapshot.nodes}
    assert topology["gpu-a01"].leaf_switch == "leaf-1"
    assert topology["gpu-a01"].nvlink_island == "nvl-a01" and topology["gpu-a01"].rack == "r1"
    assert topology["gpu-a02"].leaf_switch == "leaf-1"
    assert topology["other"].leaf_switch == ""  # not in the register: the engine's labels
    shown = api.get("/v1/assets/gpu-a01", headers=bearer(h.admin_token)).json()
    assert shown["node_id"] == "gpu-a01"
    assert shown["topology"] == {"rack": "r1", "nvlink_island": "nvl-a01",
                                 "leaf_switch": "leaf-1", "spine": "spine-1"}


def test_the_report_sets_each_servers_cost_against_its_revenue(db: Database) -> None:
    h = make_harness(db, nodes=[gpu_node("gpu-a01"), gpu_node("gpu-a02")])
    api = priced_api(h)  # H100 at 3600 a GPU-hour: 1.00 a GPU-second
    import_file(api, h, "fleet.yaml")
    token = tenant(api, h, "acme", "10000")
    job = submit(api, token, gpus=8)
    h.settle()
    run_for(h, 100)
    node = api.get(f"/v1/jobs/{job['id']}", headers=bearer(token)).json()["node_id"]
    answer = api.get("/v1/fleet/report", headers=bearer(h.admin_token),
                     params={"days": 10, "power_price": "0.20"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    rows = {r["asset"]: r for r in report["rows"]}
    busy = rows[node]
    assert busy["node_id"] == node
    charged = 8 * 100  # 8 GPUs for 100 s at 1.00: 800.00, over 10 days
    assert busy["revenue_per_day"] == f"{charged / 10:.2f}"
    # 2,400,000.00 over 48 months of 365/12 days; 10.2 kW around the clock at 0.20;
    # 3000.00 a month.
    assert busy["depreciation_per_day"] == "1643.84"
    assert busy["power_per_day"] == "48.96"
    assert busy["opex_per_day"] == "98.63"
    assert busy["cost_per_day"] == "1791.43"
    assert busy["cost_per_gpu_hour"] == "9.33"
    idle = rows["gpu-a02" if node == "gpu-a01" else "gpu-a01"]
    assert idle["revenue_per_day"] == "0.00"
    assert rows["leaf-1"]["cost_per_gpu_hour"] is None  # no GPUs
    refused = api.get("/v1/fleet/report", headers=bearer(h.admin_token),
                      params={"power_price": "cheap"})
    assert refused.status_code == 422 and "power_price" in refused.json()["detail"]
