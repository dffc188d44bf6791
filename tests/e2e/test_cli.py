"""The acceptance path through the real CLI against a real server (see conftest.py)."""

from __future__ import annotations

import json
import queue
import stat
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gpucloud.client.client import ApiError
from tests.e2e.conftest import Cloud, gated, wait_for

pytestmark = pytest.mark.slow
STATE_PATH = ["PENDING", "QUEUED", "SCHEDULED", "STARTING", "RUNNING", "SUCCEEDED"]


@pytest.fixture(autouse=True)
def free_fleet(cloud: Cloud, gate: Path) -> Iterator[None]:
    yield
    gate.touch()
    cloud.settle()


def submit(cloud: Cloud, *args: str, token: str | None = None) -> str:
    job_id: str = cloud.json("run", "--cpus", "0.5", *args, token=token)["id"]
    return job_id


def echoed(cloud: Cloud, job_id: str) -> str | None:
    return cloud.ok("logs", job_id).strip() or None


def indexes(devices: list[str]) -> set[int]:
    """'local-0/gpu3' -> 3."""
    return {int(d.rsplit("gpu", 1)[1]) for d in devices}


def test_nodes_lists_eight_simulated_h100s(cloud: Cloud) -> None:
    nodes = cloud.json("nodes")
    devices = [d for node in nodes for d in node["devices"]]
    assert len(devices) == 8
    assert all(d["simulated"] for d in devices)
    assert {d["model"] for d in devices} == {"H100"}
    assert sorted(d["index"] for d in devices) == list(range(8))
    for device in devices:
        assert {"index", "model", "memory_mib", "uuid", "health", "allocation"} <= set(device)
    human = cloud.ok("nodes")
    assert "SIMULATED" in human
    assert human.count("(simulated)") == 8


def test_two_jobs_share_the_gpus_and_a_third_waits_its_turn(cloud: Cloud, gate: Path) -> None:
    script = gated(gate)
    first = submit(cloud, "--gpus", "4", "--", "sh", "-c", script)
    second = submit(cloud, "--gpus", "4", "--", "sh", "-c", script)
    a = cloud.wait_state(first, "RUNNING")
    b = cloud.wait_state(second, "RUNNING")
    assert len(a["devices"]) == len(b["devices"]) == 4
    assert not set(a["devices"]) & set(b["devices"])

    third = submit(cloud, "--gpus", "4", "--", "sh", "-c", script)

    def waits() -> dict[str, Any] | None:
        job = cloud.job(third)
        return job if job["reason"] == "WAITING_FOR_RESOURCES" else None

    waiting = wait_for(waits, "the third job to wait for resources")
    assert waiting["state"] == "QUEUED"
    assert "free GPU" in waiting["message"]
    active = {job["id"]: job["state"] for job in cloud.json("ps")}
    assert active == {first: "RUNNING", second: "RUNNING", third: "QUEUED"}
    assert "free GPU" in cloud.ok("show", third)

    # What each job saw is what it was given, and the two sets do not overlap.
    seen: dict[str, set[int]] = {}
    for job in (a, b):
        text = wait_for(partial(echoed, cloud, job["id"]), "the echoed devices")
        seen[job["id"]] = {int(i) for i in text.split(",")}
        assert seen[job["id"]] == indexes(job["devices"])
    assert not seen[first] & seen[second]

    gate.touch()
    for job_id in (first, second):
        assert cloud.wait_state(job_id, "SUCCEEDED", "FAILED")["state"] == "SUCCEEDED"
    done = cloud.wait_state(third, "SUCCEEDED", "FAILED")
    assert done["state"] == "SUCCEEDED"
    assert done["exit_code"] == 0
    assert [e["after"] for e in done["events"] if e["kind"] == "job.state"] == STATE_PATH


def test_logs_follow_streams_until_the_job_ends(cloud: Cloud, gate: Path) -> None:
    job_id = submit(cloud, "--gpus", "1", "--", "sh", "-c",
                    gated(gate, before="echo first", after="echo last"))  # fmt: skip
    cloud.wait_state(job_id, "RUNNING")
    follower = cloud.popen("logs", "-f", job_id)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert lines.get(timeout=60) == "first\n"  # streamed while the job still runs
        assert follower.poll() is None
        gate.touch()
        assert lines.get(timeout=60) == "last\n"
        assert follower.wait(60) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert cloud.ok("logs", job_id) == "first\nlast\n"


def test_cancel_stops_a_running_job(cloud: Cloud) -> None:
    job_id = submit(cloud, "--gpus", "1", "--", "sleep", "60")
    cloud.wait_state(job_id, "RUNNING")
    assert cloud.json("cancel", job_id)["id"] == job_id
    cancelled = cloud.wait_state(job_id, "CANCELLED", "SUCCEEDED", "FAILED")
    assert cancelled["state"] == "CANCELLED"
    result = cloud.cli("wait", job_id)
    assert result.returncode != 0
    assert "CANCELLED" in result.stderr
    assert job_id not in {job["id"] for job in cloud.json("ps")}
    assert job_id in {job["id"] for job in cloud.json("ps", "--all")}


def test_wait_exits_with_the_job_exit_code(cloud: Cloud) -> None:
    job_id = submit(cloud, "--gpus", "0", "--", "sh", "-c", "exit 7")
    result = cloud.cli("wait", job_id, "--timeout", "60")
    assert result.returncode == 7, result.stderr
    assert "FAILED" in result.stderr
    assert "exit code 7" in result.stderr

    direct = cloud.cli("run", "--cpus", "0.5", "--wait", "--", "sh", "-c", "exit 3")
    assert direct.returncode == 3, direct.stderr
    assert cloud.cli("run", "--cpus", "0.5", "--wait", "--", "true").returncode == 0


def test_show_tells_the_whole_story(cloud: Cloud, gate: Path) -> None:
    job_id = submit(cloud, "--gpus", "2", "--name", "story", "--", "sh", "-c", gated(gate))
    cloud.wait_state(job_id, "RUNNING")
    gate.touch()
    job = cloud.wait_state(job_id, "SUCCEEDED", "FAILED")
    assert (job["id"], job["name"], job["state"], job["reason"]) == (
        job_id, "story", "SUCCEEDED", "COMPLETED")  # fmt: skip
    changes = [(e["before"], e["after"]) for e in job["events"] if e["kind"] == "job.state"]
    assert changes == list(zip([None, *STATE_PATH[:-1]], STATE_PATH, strict=True))
    human = cloud.ok("show", job_id)
    for fragment in ("SUCCEEDED", "exit code", "PENDING -> QUEUED", "RUNNING -> SUCCEEDED"):
        assert fragment in human


def test_bad_input_is_refused_clearly_and_creates_nothing(cloud: Cloud, tmp_path: Path) -> None:
    before = {job["id"] for job in cloud.json("ps", "--all")}
    broken = tmp_path / "broken.yaml"
    broken.write_text("gpus: 1\ncommand: [sleep, 1\nname: x\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("gpus: 1\ncolour: red\ncommand: true\n")
    cases = [
        (["run", "--gpus", "1", "--gpu-type", "B9000", "--", "true"], "unknown GPU type"),
        (["run", "--gpus", "9", "--cpus", "0.5", "--", "true"], "never fit"),
        (["run", "--max-duration", "-5", "--", "true"], "max_duration"),
        (["run", "-f", str(broken)], "broken.yaml line 3"),
        (["run", "-f", str(unknown)], "allowed keys"),
        (["run", "--env", "NOEQUALS", "--", "true"], "NAME=VALUE"),
    ]
    for args, fragment in cases:
        result = cloud.cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: "), result.stderr
        assert fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""

    bad_token = cloud.cli("run", "--cpus", "0.5", "--", "true", token="gpc_not-a-real-token")
    assert bad_token.returncode == 1
    assert bad_token.stderr.startswith("error: ")
    assert "token" in bad_token.stderr
    assert {job["id"] for job in cloud.json("ps", "--all")} == before


def test_another_tenant_cannot_see_the_first_tenants_jobs(cloud: Cloud, gate: Path) -> None:
    cloud.json("tenant", "create", "rival")
    created = cloud.ok("user", "create", "mallory", "--tenant", "rival", "--role", "member")
    assert "shown once" in created
    token = next(line.split(": ", 1)[1] for line in created.splitlines()
                 if line.startswith("token: "))  # fmt: skip
    assert cloud.json("whoami", token=token)["tenant"] == "rival"

    job_id = submit(cloud, "--gpus", "1", "--", "sh", "-c", gated(gate))
    cloud.wait_state(job_id, "RUNNING")
    for command in (["show", job_id], ["logs", job_id], ["cancel", job_id]):
        result = cloud.cli(*command, token=token)
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr == f"error: job {job_id!r} not found\n"
    with cloud.sdk(token) as api, pytest.raises(ApiError) as info:
        api.job_events(job_id)
    assert (info.value.status, info.value.code) == (404, "not_found")
    assert job_id not in {job["id"] for job in cloud.json("ps", "--all", token=token)}
    # The device is visibly taken, but not by whom.
    held = [d["allocation"] for n in cloud.json("nodes", token=token) for d in n["devices"]
            if d["allocation"] is not None]  # fmt: skip
    assert held == [{"allocation_id": None, "job_id": None}]
    assert "in use" in cloud.ok("nodes", token=token)
    assert cloud.job(job_id)["state"] == "RUNNING"  # mallory's cancel did nothing


def test_login_saves_a_private_profile(cloud: Cloud) -> None:
    env = cloud.env()
    del env["GPUCLOUD_URL"], env["GPUCLOUD_TOKEN"]
    result = cloud.cli("login", cloud.url, "--token", cloud.token, env=env)
    assert result.returncode == 0, result.stderr
    assert "admin" in result.stdout
    profile = cloud.home / "config.json"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    assert json.loads(profile.read_text()) == {"url": cloud.url, "token": cloud.token}
    whoami = cloud.cli("whoami", "--json", env=env)  # from the saved profile alone
    assert json.loads(whoami.stdout)["user"] == "admin"

    refused = cloud.cli("login", cloud.url, "--token", "gpc_wrong", env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ")


def test_tokens_can_be_created_used_and_revoked(cloud: Cloud) -> None:
    created = cloud.json("token", "create", "--name", "ci", "--expires-in", "30d")
    assert created["expires_at"] is not None
    assert cloud.json("whoami", token=created["token"])["user"] == "admin"
    assert created["id"] in {t["id"] for t in cloud.json("token", "list")}
    assert cloud.json("token", "revoke", created["id"])["revoked_at"] is not None
    after = cloud.cli("whoami", token=created["token"])
    assert after.returncode == 1
    assert after.stderr.startswith("error: ")
    assert "revoked" in cloud.ok("token", "list")
    users = cloud.json("user", "list")
    assert "admin" in {u["name"] for u in users}
    assert "operator" in {t["name"] for t in cloud.json("tenant", "list")}
