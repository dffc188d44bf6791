"""A service on a real Slurm cluster: its replica is a Slurm job on a GPU node, and the router
reaches it at that node's address and its own port."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cloud, wait_for
from tests.integration.slurm.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
CHAT = str(Path(__file__).resolve().parents[3] / "examples" / "chat_server.py")


def test_a_service_replica_runs_as_a_slurm_job_and_is_routed_to(cloud: Cloud,
                                                                  slurm: SlurmCluster) -> None:
    with cloud.sdk() as api:
        created = api.create_service("slurmchat", {
            "command": [sys.executable, CHAT], "gpus": 1, "gpu_type": "H100", "cpus": 0.5,
            "memory": "256M", "min_replicas": 1, "max_replicas": 1})

        def ready() -> Any:
            shown = api.get_service("slurmchat")
            return shown if shown.ready_replicas == 1 else None

        shown = wait_for(ready, "a READY replica on Slurm", timeout=90)
        replica = shown.replicas[0]
        ran = next(j for j in slurm.jobs() if f"job={replica.job_id} " in j.get("comment", ""))
        assert ran["job_state"] == "RUNNING"
        node = next(n for n in cloud.json("nodes") if n["id"] == ran["nodes"])
        assert replica.host == node["address"]  # the router reaches node_address:port
        answer = httpx.post(api.service_url("slurmchat") + "v1/chat/completions",
                            headers={"Authorization": f"Bearer {cloud.token}"},
                            json={"messages": [{"role": "user", "content": "on slurm"}]},
                            timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "on slurm"
        assert answer.headers["x-served-by"] == str(replica.port)
        api.delete_service(created.id)
        wait_for(lambda: api.list_services(deleted=True)[0].state.value == "DELETED",
                 "the delete", timeout=60)
