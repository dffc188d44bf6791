"""The operator fleet through the real CLI against the session's real server (conftest.py):
the asset register (import, idempotency, line-numbered problems, list, show, update, retire),
the cost report as a table and CSV, boot images, and a whole bare-metal lease at a real
Redfish BMC (``sushy-emulator``): lease, power, release, billed per server-hour."""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cloud, wait_for
from tests.redfish_emulator import PASSWORD, USER, Emulator, available, emulator

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).parents[2] / "examples" / "fleet"


def failed(result: Any) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    return str(result.stderr)


def test_the_asset_register_and_the_report_from_the_cli(cloud: Cloud, tmp_path: Path) -> None:
    first = cloud.ok("fleet", "import", str(EXAMPLES / "fleet.yaml"))
    assert "5 created" in first or "5 unchanged" in first  # the session may have imported it
    again = cloud.json("fleet", "import", str(EXAMPLES / "fleet.yaml"))
    assert again["created"] == [] and again["updated"] == [] and len(again["unchanged"]) == 5

    bad = tmp_path / "bad.yaml"
    bad.write_text("servers:\n  - name: gpu-z1\n    cpus: lots\n"
                   "  - name: gpu-z2\n    accelerators: 8xH100\n    rack: r1\n"
                   "    purchase_date: 2025-13-01\n")
    stderr = failed(cloud.cli("fleet", "import", str(bad)))
    assert f"{bad}: line 2: gpu-z1: cpus" in stderr
    assert f"{bad}: line 4: gpu-z2: purchase_date" in stderr
    assert "nothing was changed" in stderr
    assert "gpu-z1" not in cloud.ok("fleet", "list")
    broken = tmp_path / "broken.yaml"
    broken.write_text("servers:\n  - name: x\n   bad: indent\n")
    assert "line 3" in failed(cloud.cli("fleet", "import", str(broken)))

    listed = cloud.ok("fleet", "list")
    for name in ("gpu-a01", "gpu-a02", "leaf-1", "spine-1", "store-1"):
        assert name in listed
    assert "bare metal" in listed  # gpu-a02
    shown = cloud.json("fleet", "show", "gpu-a01")
    assert shown["accelerators"] == "8xH100" and shown["rack"] == "r1"
    assert "SYS-821GE-TNHR" in cloud.ok("fleet", "show", "gpu-a01")
    moved = cloud.json("fleet", "update", "gpu-a01", "rack=r2", "position=12")
    assert (moved["rack"], moved["position"]) == ("r2", 12)
    assert "cpus" in failed(cloud.cli("fleet", "update", "gpu-a01", "cpus=-1"))
    assert "FIELD=VALUE" in failed(cloud.cli("fleet", "update", "gpu-a01", "rack"))
    cloud.ok("fleet", "update", "gpu-a01", "rack=r1", "position=10")  # as the file says

    table = cloud.ok("fleet", "report", "--days", "7")
    assert "COST/GPU-H" in table and "gpu-a01" in table
    rows = list(csv.DictReader(io.StringIO(cloud.ok("fleet", "report", "--csv"))))
    by_asset = {r["asset"]: r for r in rows}
    assert by_asset["gpu-a01"]["cost_per_day"] and by_asset["leaf-1"]["cost_per_gpu_hour"] == ""
    assert "choose one" in failed(cloud.cli("fleet", "report", "--csv", "--json"))

    name = f"tmp-{secrets.token_hex(3)}"
    cloud.ok("fleet", "import", _one_switch(tmp_path, name))
    retired = cloud.json("fleet", "retire", name, "--reason", "sold")
    assert retired["retired_at"] is not None
    assert name not in cloud.ok("fleet", "list")
    assert name in cloud.ok("fleet", "list", "--retired")


def _one_switch(tmp_path: Path, name: str) -> str:
    path = tmp_path / "switch.csv"
    path.write_text("kind,name,fabric,tier,ports\n"
                    f"switch,{name},ethernet,leaf,48\n")
    return str(path)


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[Emulator]:
    why = available()
    if why is not None:
        pytest.skip(why)
    with emulator(tmp_path, ["bm-e2e"]) as found:
        yield found


def test_a_bare_metal_lease_from_the_cli_at_a_real_bmc(cloud: Cloud, tmp_path: Path,
                                                       bmc: Emulator) -> None:
    model = f"BM-{secrets.token_hex(3)}"
    register = tmp_path / "bm.yaml"
    register.write_text(f"servers:\n  - name: bm-e2e\n    role: ai\n    model: {model}\n"
                        f"    accelerators: 8xH100\n    cpus: 112\n    memory_gib: 2048\n"
                        f"    bmc: {bmc.address('bm-e2e')}\n    baremetal: true\n")
    cloud.ok("fleet", "import", str(register))
    login = cloud.cli("fleet", "bmc-login", "bm-e2e", "--user", USER,
                      env=cloud.env(GPUCLOUD_BMC_PASSWORD=PASSWORD))
    assert login.returncode == 0 and PASSWORD not in login.stdout + login.stderr
    cloud.ok("baremetal", "image", "add", "e2e-os", f"{bmc.images}/ubuntu.iso")
    cloud.ok("baremetal", "image", "add", "e2e-wipe", f"{bmc.images}/wipe.iso", "--wipe")
    assert "e2e-os" in cloud.ok("baremetal", "image", "list")
    assert "bm-e2e" not in cloud.ok("baremetal", "list")  # not priced yet: not leasable
    cloud.ok("price", "set", model, "3600", "--server")
    assert "3600.00" in cloud.ok("baremetal", "list")

    lease = cloud.json("baremetal", "lease", "--model", model, "--image", "e2e-os")
    assert lease["server"] == "bm-e2e" and lease["state"] == "provisioning"
    wait_for(lambda: cloud.json("baremetal", "show", lease["id"])["state"] == "leased",
             "the server to be provisioned", timeout=60)
    assert bmc.power_on("bm-e2e")
    assert "power" in cloud.ok("baremetal", "show", lease["id"])
    cloud.ok("baremetal", "power", "off", lease["id"])
    wait_for(lambda: not bmc.power_on("bm-e2e"), "the BMC to power it off", timeout=30)
    released = cloud.json("baremetal", "release", lease["id"])
    assert released["state"] == "ended"
    leases = cloud.ok("baremetal", "leases", "--ended")
    assert lease["id"] in leases
    # then it is wiped: the wipe image boots; it would power the server off when done
    wait_for(lambda: bmc.power_on("bm-e2e") and bmc.media("bm-e2e").endswith("/wipe.iso"),
             "the wipe image to boot", timeout=60)
    def wiping() -> bool:
        server = next(s for s in cloud.json("baremetal", "list", "--all") if s["name"] == "bm-e2e")
        return bool(server["state"] == "cleaning" and server["wipe_started_at"])

    wait_for(wiping, "the controller to see the wipe running", timeout=30)
    bmc.force_off("bm-e2e")
    wait_for(lambda: "bm-e2e" in cloud.ok("baremetal", "list"), "the server back", timeout=60)
    cloud.ok("fleet", "retire", "bm-e2e", "--reason", "e2e done")
