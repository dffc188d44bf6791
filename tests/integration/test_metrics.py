"""/metrics: Prometheus' text format, dcgm-exporter's names for every GPU, platform metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gpucloud.core.faults import SignalKind
from gpucloud.store.db import Database
from tests.billing_api import bearer, priced_api, run_for, submit, tenant
from tests.fakes import gpu_node
from tests.harness import Harness, make_harness

DCGM = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_XID_ERRORS")


def scrape(h: Harness, api: TestClient) -> dict[str, list[Sample]]:
    """One scrape; the same application every time, as a server keeps its counters."""
    response = api.get("/metrics", headers=bearer(h.admin_token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    families: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(response.text):
        families.setdefault(family.name, []).extend(family.samples)
    return families


def value(samples: list[Sample], name: str | None = None, **labels: str) -> float:
    found = [s.value for s in samples
             if (name is None or s.name == name)
             and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (labels, found)
    return found[0]


def test_simulated_gpus_carry_dcgm_names_with_node_job_and_tenant(db: Database) -> None:
    h = make_harness(db, nodes=[gpu_node("n0", gpus=2), gpu_node("n1", gpus=2)])
    api = priced_api(h)
    token = tenant(api, h, "acme", "1000")
    job = submit(api, token)["id"]
    h.settle()
    metrics = scrape(h, api)
    for name in DCGM:
        assert len(metrics[name]) == 4, name  # one series per GPU
    busy = [s for s in metrics["DCGM_FI_DEV_GPU_UTIL"] if s.labels["job"] == job]
    assert len(busy) == 1 and busy[0].value == 100.0
    labels = busy[0].labels
    assert labels["source"] == "simulated" and labels["modelName"] == "H100"
    assert labels["tenant"].startswith("tnt_") and labels["Hostname"] == labels["node"]
    assert labels["UUID"] == f"GPU-{labels['node']}-{labels['gpu']}"
    held = dict(node=labels["node"], gpu=labels["gpu"])
    assert value(metrics["DCGM_FI_DEV_FB_USED"], **held) == 80 * 1024
    idle = [s for s in metrics["DCGM_FI_DEV_GPU_UTIL"] if s.labels["job"] == ""]
    assert len(idle) == 3 and all(s.value == 0 for s in idle)
    assert value(metrics["DCGM_FI_DEV_POWER_USAGE"], **held) > max(
        s.value for s in metrics["DCGM_FI_DEV_POWER_USAGE"] if s.labels["job"] == "")
    assert value(metrics["gpucloud_jobs"], state="RUNNING") == 1
    assert value(metrics["gpucloud_queue_length"]) == 0


def test_counters_advance_from_what_happened_since_the_last_scrape(db: Database) -> None:
    h = make_harness(db, nodes=[gpu_node("n0", gpus=2)])
    api = priced_api(h)
    token = tenant(api, h, "acme", "1000")
    first = scrape(h, api)  # counters start here
    assert value(first["gpucloud_placements"], "gpucloud_placements_total") == 0
    jobs = [submit(api, token)["id"] for _ in range(3)]
    h.settle()
    run_for(h, 5)
    h.engine.signal("n0", SignalKind.XID, h.clock.now(), device_index=1, code=79)
    h.settle()
    metrics = scrape(h, api)
    assert value(metrics["gpucloud_placements"], "gpucloud_placements_total") >= 2
    assert value(metrics["gpucloud_queue_length"]) + value(
        metrics["gpucloud_jobs"], state="RUNNING") >= 1
    assert value(metrics["DCGM_FI_DEV_XID_ERRORS"], node="n0", gpu="1") == 79
    assert value(metrics["DCGM_FI_DEV_XID_ERRORS"], node="n0", gpu="0") == 0
    faults = metrics["gpucloud_faults"]
    assert sum(s.value for s in faults if s.labels["kind"] == "xid") == 1
    placed = value(metrics["gpucloud_time_to_placement_seconds"],
                   "gpucloud_time_to_placement_seconds_count")
    assert placed == value(metrics["gpucloud_placements"], "gpucloud_placements_total")
    revenue = value(metrics["gpucloud_revenue_minor"], "gpucloud_revenue_minor_total")
    assert revenue > 0  # 1.00 a second for the seconds the jobs ran
    assert len(jobs) == 3


def test_only_operators_read_metrics(db: Database) -> None:
    h = make_harness(db)
    api = h.api()
    member = tenant(api, h, "acme", None)
    refused = api.get("/metrics", headers=bearer(member))
    assert refused.status_code == 403 and "operators only" in refused.json()["detail"]
    assert api.get("/metrics").status_code == 401
