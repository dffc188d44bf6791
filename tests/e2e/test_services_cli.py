"""A service's life through the real CLI against a real server: create it with a command after
'--', call its endpoint, see it in list and show, read a replica's logs, roll out a new version
with update, make it public with a key, delete it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cloud, wait_for

pytestmark = pytest.mark.slow
CHAT = str(Path(__file__).resolve().parents[2] / "examples" / "chat_server.py")
ASK = {"messages": [{"role": "user", "content": "hi from the cli"}]}


def show(cloud: Cloud, name: str) -> dict[str, Any]:
    """Through the SDK: polling with a CLI process each time would be slow."""
    with cloud.sdk() as api:
        shown: dict[str, Any] = api.get_service(name).model_dump(mode="json")
    return shown


def test_a_service_through_the_cli(cloud: Cloud) -> None:
    created = cloud.json("service", "create", "clichat", "--gpus", "0", "--cpus", "0.2",
                         "--memory", "256M", "--min-replicas", "1", "--max-replicas", "2",
                         "--target-rps", "50", "--readiness", "/health", "-e",
                         "CHAT_VERSION=v1", "--", sys.executable, CHAT)
    assert created["spec"]["command"] == [sys.executable, CHAT]
    assert created["spec"]["env"] == {"CHAT_VERSION": "v1"}
    assert cloud.ok("service", "show", "clichat").count("clichat") >= 1
    url = created["url"]
    assert url.endswith("/s/operator/clichat/")
    wait_for(lambda: show(cloud, "clichat")["ready_replicas"] == 1, "a ready replica")
    headers = {"Authorization": f"Bearer {cloud.token}"}
    answer = httpx.post(url + "v1/chat/completions", json=ASK, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["system_fingerprint"] == "v1"

    listed = cloud.ok("service", "list")
    assert "clichat" in listed and "RUNNING" in listed and "1/1" in listed
    shown = cloud.ok("service", "show", "clichat")
    assert "READY" in shown and "50 req/s per replica" in shown
    logs = cloud.cli("service", "logs", "clichat", "--replica", "1")
    assert logs.returncode == 0, logs.stderr

    updated = cloud.json("service", "update", "clichat", "-e", "CHAT_VERSION=v2")
    assert updated["generation"] == 2

    def on_v2() -> bool:
        s = show(cloud, "clichat")
        return bool(s["ready_replicas"] == 1 and len(s["replicas"]) == 1
                    and s["replicas"][0]["generation"] == 2)

    wait_for(on_v2, "the rollout to v2")
    again = httpx.post(url + "v1/chat/completions", json=ASK, headers=headers, timeout=60)
    assert again.json()["system_fingerprint"] == "v2"

    key = cloud.ok("service", "key", "clichat").strip()
    assert key.startswith("gcs_")
    public = httpx.post(url + "v1/chat/completions", json=ASK,
                        headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert public.status_code == 200, public.text

    bad = cloud.cli("service", "create", "broken", "--min-replicas", "3", "--max-replicas",
                    "2", "--", "true")
    assert bad.returncode != 0 and "more than max_replicas" in bad.stderr
    cloud.ok("service", "delete", "clichat")
    with cloud.sdk() as api:
        wait_for(lambda: api.list_services(deleted=True)[0].state.value == "DELETED",
                 "the delete")
