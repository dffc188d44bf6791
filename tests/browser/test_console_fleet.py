"""The operator's asset page in the console: the fleet report's figures (the same as the API's)
and the bare-metal servers; tenants are refused."""

from __future__ import annotations

from pathlib import Path

from gpucloud.fleet_import import read_file
from gpucloud.store.db import Database
from tests.browser.test_console_http import bearer, new_tenant, sign_in
from tests.fakes import gpu_node
from tests.harness import make_harness

EXAMPLES = Path(__file__).parents[2] / "examples" / "fleet"


def test_the_asset_page_shows_the_reports_figures_and_the_bare_metal_servers(
        db: Database) -> None:
    h = make_harness(db, nodes=[gpu_node("gpu-a01")])
    api = h.api()
    records = [{"line": r.line, "kind": r.kind, "values": dict(r.values)}
               for r in read_file(EXAMPLES / "fleet.yaml")]
    api.post("/v1/assets/import", headers=bearer(h.admin_token),
             json={"assets": records}).raise_for_status()
    h.settle()
    report = api.get("/v1/fleet/report", headers=bearer(h.admin_token),
                     params={"days": 7}).json()
    a01 = next(r for r in report["rows"] if r["asset"] == "gpu-a01")

    web = h.api()
    sign_in(web, h.admin_token)
    page = web.get("/ops/assets", params={"days": 7})
    assert page.status_code == 200, page.text
    row = page.text.split("<td>gpu-a01</td>", 1)[1].split("</tr>", 1)[0]
    assert f'<td class="num">{a01["cost_per_day"]}</td>' in row
    assert f'<td class="num">{a01["cost_per_gpu_hour"]}</td>' in row
    assert "<td>gpu-a01</td>" in row  # matched to the engine's node
    servers = page.text.split('id="baremetal"', 1)[1].split("</table>", 1)[0]
    assert "<td>gpu-a02</td>" in servers and "<td>available</td>" in servers
    assert "gpu-a01" not in servers  # not leasable whole
    assert 'href="/ops/assets"' in web.get("/").text  # in the operator's navigation

    tenant = h.api()
    sign_in(tenant, new_tenant(h, "acme"))
    refused = tenant.get("/ops/assets")
    assert refused.status_code == 403 and "for operators only" in refused.text
    assert 'href="/ops/assets"' not in tenant.get("/").text
