"""Images on the real local engine (real venvs, builder processes, jobs and ptys) and a real
database: the catalogue, a job inside its image's venv, one build reused by the next job, a
failed build as a clear job error, and ``image save`` of an instance seen by a later job and by
nobody in another tenant. No network: the tiny ``cuda-base`` preset needs no download."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gpucloud.store import migrate
from gpucloud.store.db import Database, sqlite_url
from tests.billing_api import bearer, priced_api, tenant
from tests.harness import Harness, local_engine_harness
from tests.integration.test_instances import create, in_state, run_in_shell, until
from tests.servers import kill_job_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    kill_job_processes(path)


def harness(db: Database, data_dir: Path) -> Harness:
    return local_engine_harness(db, data_dir, "8xH100", stop_grace_s=2)


@pytest.fixture
def h(db: Database, data_dir: Path) -> Harness:
    """On SQLite and PostgreSQL: where the rows matter."""
    return harness(db, data_dir)


@pytest.fixture
def h1(tmp_path: Path, data_dir: Path) -> Iterator[Harness]:
    """SQLite only: where what is tested is the files and processes, not the database."""
    database = Database(sqlite_url(tmp_path))
    migrate.upgrade(database)
    yield harness(database, data_dir)
    database.dispose()


def submit(api: TestClient, token: str, image: str, script: str) -> dict[str, Any]:
    response = api.post("/v1/jobs", headers=bearer(token), json={
        "command": ["/bin/sh", "-c", script], "image": image, "cpus": 0.5, "memory": "256M"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def job(api: TestClient, token: str, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=bearer(token)).json()
    return body


def finished(h: Harness, api: TestClient, token: str, job_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        current = job(api, token, job_id)
        return current if current["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    done: dict[str, Any] = until(h, ended, f"job {job_id} to end", timeout_s=60)
    return done


def output(api: TestClient, token: str, job_id: str) -> str:
    response = api.get(f"/v1/jobs/{job_id}/logs", headers=bearer(token))
    assert response.status_code == 200, response.text
    text: str = response.text
    return text


def image(api: TestClient, token: str, name: str) -> dict[str, Any]:
    response = api.get(f"/v1/images/{name}", headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


PROBE = ('python -c "import os, sys; print(\'prefix=\' + sys.prefix); '
         'print(\'venv=\' + os.environ[\'VIRTUAL_ENV\']); '
         'print(\'image=\' + os.environ[\'GPUCLOUD_IMAGE\'])"')


def test_the_catalogue_lists_the_presets_with_their_versions(h1: Harness) -> None:
    h = h1
    api = h.api()
    listed = api.get("/v1/images", headers=bearer(h.admin_token)).json()["items"]
    by_name = {i["name"]: i for i in listed}
    assert {"pytorch", "tensorflow", "jax", "cuda-base", "ascend-cann"} <= set(by_name)
    assert (by_name["pytorch"]["framework"], by_name["pytorch"]["framework_version"],
            by_name["pytorch"]["accelerator_version"]) == ("torch", "2.5.1", "12.4")
    assert by_name["ascend-cann"]["accelerator"] == "cann"
    assert "torch==2.5.1" in by_name["pytorch"]["requirements"]
    assert by_name["cuda-base"]["requirements"] == []
    assert api.get("/v1/images/no-such", headers=bearer(h.admin_token)).status_code == 404


def test_a_job_runs_in_its_image_venv_built_once_and_reused(h: Harness, data_dir: Path) -> None:
    api = priced_api(h)
    token = tenant(api, h, "lab", "100000")
    first = submit(api, token, "cuda-base", PROBE)
    # The pass that places it starts the build and holds the job until the venv is ready.
    held = until(h, lambda: (j := job(api, token, first["id"]))["state"] == "SCHEDULED" and j,
                 "the job placed")
    assert held["message"].startswith("preparing image cuda-base on node "), held
    # A control-plane restart while it builds: the same build is found, none started again.
    h = h.restart()
    done = finished(h, api, token, first["id"])
    assert (done["state"], done["image"]) == ("SUCCEEDED", "cuda-base"), done
    text = output(api, token, first["id"])
    venv = text.split("venv=")[1].split()[0]
    assert f"prefix={venv}" in text and "image=cuda-base" in text
    assert Path(venv).is_relative_to(data_dir / "images" / "nodes")
    built = image(api, token, "cuda-base")["nodes"]
    assert [(n["state"], n["builds"], n["path"]) for n in built] == [("READY", 1, venv)]
    stamp = (Path(venv) / "pyvenv.cfg").stat().st_mtime_ns

    second = submit(api, token, "cuda-base", PROBE)
    assert finished(h, api, token, second["id"])["state"] == "SUCCEEDED"
    assert f"prefix={venv}" in output(api, token, second["id"])
    again = image(api, token, "cuda-base")["nodes"]
    assert [(n["state"], n["builds"]) for n in again] == [("READY", 1)]  # reused, not rebuilt
    assert (Path(venv) / "pyvenv.cfg").stat().st_mtime_ns == stamp


def tiny_wheel(path: Path) -> None:
    """A real wheel (a module, METADATA, WHEEL, RECORD): pip installs it with no network."""
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("tinypkg.py", "VALUE = 7\n")
        info = "tinypkg-1.0.dist-info"
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                        "Root-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", f"tinypkg.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n"
                                         f"{info}/RECORD,,\n")


def test_a_failed_build_fails_the_job_then_a_rebuild_works(h1: Harness, data_dir: Path) -> None:
    h = h1
    # An operator's catalogue entry whose wheel is not there yet: pip fails at once, offline.
    wheel = data_dir / "wheels" / "tinypkg-1.0-py3-none-any.whl"
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    (data_dir / "images" / "catalogue.json").write_text(json.dumps([{
        "name": "local-tiny", "title": "a tiny local wheel", "framework": "tinypkg",
        "framework_version": "1.0", "accelerator_version": "12.4",
        "requirements": [str(wheel)]}]))
    api = priced_api(h)
    token = tenant(api, h, "lab", "100000")
    listed = {i["name"] for i in api.get("/v1/images", headers=bearer(token)).json()["items"]}
    assert "local-tiny" in listed
    failed = submit(api, token, "local-tiny", "echo never runs")
    done = finished(h, api, token, failed["id"])
    assert (done["state"], done["reason"]) == ("FAILED", "LAUNCH_FAILED"), done
    assert "image local-tiny failed to build on node" in done["message"], done
    assert "tinypkg-1.0-py3-none-any.whl" in done["message"]
    assert [n["state"] for n in image(api, token, "local-tiny")["nodes"]] == ["FAILED"]
    # Stays FAILED for the next job too: no silent retry.
    second = submit(api, token, "local-tiny", "echo never runs")
    assert finished(h, api, token, second["id"])["state"] == "FAILED"

    # The operator fixes the cause and asks for a rebuild; tenants cannot rebuild presets.
    wheel.parent.mkdir()
    tiny_wheel(wheel)
    url = "/v1/images/local-tiny/rebuild"
    assert api.post(url, headers=bearer(token)).status_code == 403
    again = api.post(url, headers=bearer(h.admin_token))
    assert again.status_code == 200, again.text
    assert [(n["state"], n["builds"]) for n in again.json()["nodes"]] == [("BUILDING", 2)]
    fixed = submit(api, token, "local-tiny", 'python -c "import tinypkg; print(tinypkg.VALUE)"')
    assert finished(h, api, token, fixed["id"])["state"] == "SUCCEEDED"
    assert "7" in output(api, token, fixed["id"])
    assert [n["state"] for n in image(api, token, "local-tiny")["nodes"]] == ["READY"]
    assert api.post(url, headers=bearer(h.admin_token)).status_code == 409  # nothing failed


def test_image_save_makes_a_private_image_only_its_tenant_sees(h: Harness) -> None:
    api = priced_api(h)
    token = tenant(api, h, "lab", "100000")
    other = tenant(api, h, "rival", "100000")
    create(api, token, name="dev", gpus=1, image="cuda-base")
    in_state(h, api, token, "dev", "RUNNING")
    # "Install" a tiny package the way pip --user would (no network): a module and its
    # dist-info in the instance's user site, which PIP_USER=1 makes pip's target.
    script = (
        'D=$(python -c "import site; print(site.getusersitepackages())"); mkdir -p "$D"; '
        'echo "VALUE = 42" > "$D/tinypkg.py"; mkdir -p "$D/tinypkg-1.0.dist-info"; '
        'printf "Metadata-Version: 2.1\\nName: tinypkg\\nVersion: 1.0\\n" '
        '> "$D/tinypkg-1.0.dist-info/METADATA"; echo "pip_user=$PIP_USER"; '
        'python -c "import tinypkg; print(\'in-instance\', tinypkg.VALUE)"')
    out, code = run_in_shell(api, token, "dev", script)
    assert code == 0 and "in-instance 42" in out and "pip_user=1" in out, out

    saved = api.post("/v1/images", headers=bearer(token), json={"instance": "dev",
                                                                 "name": "mine"})
    assert saved.status_code == 201, saved.text
    body = saved.json()
    assert (body["kind"], body["base"], body["packages"]) == ("private", "cuda-base",
                                                             ["tinypkg==1.0"])
    again = api.post("/v1/images", headers=bearer(token), json={"instance": "dev",
                                                                "name": "mine"})
    assert again.status_code == 409, again.text
    preset_name = api.post("/v1/images", headers=bearer(token),
                           json={"instance": "dev", "name": "pytorch"})
    assert preset_name.status_code == 409

    used = submit(api, token, "mine",
                  'python -c "import tinypkg, os; print(\'job\', tinypkg.VALUE, '
                  'os.environ[\'GPUCLOUD_IMAGE\'])"')
    done = finished(h, api, token, used["id"])
    assert done["state"] == "SUCCEEDED", done
    assert "job 42 mine" in output(api, token, used["id"])

    # Another tenant: not listed, not shown, not usable.
    theirs = {i["name"] for i in api.get("/v1/images", headers=bearer(other)).json()["items"]}
    assert "mine" not in theirs and "cuda-base" in theirs
    assert api.get("/v1/images/mine", headers=bearer(other)).status_code == 404
    assert api.get(f"/v1/images/{body['id']}", headers=bearer(other)).status_code == 404
    assert api.delete("/v1/images/mine", headers=bearer(other)).status_code == 404
    refused = api.post("/v1/jobs", headers=bearer(other), json={
        "command": ["true"], "image": "mine", "cpus": 0.5, "memory": "256M"})
    assert refused.status_code == 404, refused.text
    assert "mine" in refused.json()["detail"]

    # An instance in the private image has its packages, and a save of it keeps them.
    create(api, token, name="dev2", gpus=1, image="mine")
    in_state(h, api, token, "dev2", "RUNNING")
    out, code = run_in_shell(api, token, "dev2", (
        'D=$(python -c "import site; print(site.getusersitepackages())"); mkdir -p "$D"; '
        'echo "MORE = 1" > "$D/morepkg.py"; python -c "import tinypkg; print(\'has\', '
        'tinypkg.VALUE)"'))
    assert code == 0 and "has 42" in out, out
    layered = api.post("/v1/images", headers=bearer(token),
                       json={"instance": "dev2", "name": "mine2"}).json()
    assert (layered["base"], layered["packages"]) == ("cuda-base", ["tinypkg==1.0"])
    both = submit(api, token, "mine2", 'python -c "import tinypkg, morepkg; print(\'both\', '
                                       'tinypkg.VALUE + morepkg.MORE)"')
    assert finished(h, api, token, both["id"])["state"] == "SUCCEEDED"
    assert "both 43" in output(api, token, both["id"])

    assert api.delete("/v1/images/mine", headers=bearer(token)).status_code == 200
    assert api.get("/v1/images/mine", headers=bearer(token)).status_code == 404
