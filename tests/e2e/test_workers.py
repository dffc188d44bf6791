"""gpucloud up --workers 2: two processes answer on one port, one of them leads the
controllers, work submitted to either runs, and stopping the first stops the other."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from tests.servers import kill_job_processes, start_server


def pid_of(replica: str) -> int:
    return int(replica.split(":")[2])  # host@ns:port:pid:nonce (store/leader.replica_id)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_api_workers_share_the_port_and_the_first_leads(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, None, "--workers", "2", "--simulate-gpus", "2xH100")
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        answers: dict[str, bool] = {}
        for _ in range(60):  # a new connection each time: the kernel picks a process per one
            body = httpx.get(f"{server.url}/v1/admin/leader", headers=headers).json()
            answers[body["replica"]] = body["replica_leads"]
            if len(answers) == 2:
                break
        assert len(answers) == 2, f"one process answered every connection: {answers}"
        assert sorted(answers.values()) == [False, True]  # exactly one leads
        leader = next(r for r, leads in answers.items() if leads)
        assert pid_of(leader) == server.process.pid  # the first process took the lease

        ids = []
        for _ in range(6):  # spread over both processes; the leader's controllers run them
            job = httpx.post(f"{server.url}/v1/jobs", headers=headers,
                             json={"command": ["true"], "gpus": 1, "cpus": 0.1})
            assert job.status_code == 201, job.text
            ids.append(job.json()["id"])
        deadline = time.monotonic() + 60
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {i: httpx.get(f"{server.url}/v1/jobs/{i}", headers=headers).json()["state"]
                      for i in ids}
            if all(s == "SUCCEEDED" for s in states.values()):
                break
            time.sleep(0.3)
        assert all(s == "SUCCEEDED" for s in states.values()), states

        worker = next(pid_of(r) for r, leads in answers.items() if not leads)
        server.stop()
        deadline = time.monotonic() + 20
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(worker), "the worker outlived the first process"
    finally:
        server.stop()
        kill_job_processes(data_dir)


def test_a_worker_stops_when_the_first_process_is_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, None, "--workers", "2", "--simulate-gpus", "1xH100")
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        workers = set()
        for _ in range(60):
            body = httpx.get(f"{server.url}/v1/admin/leader", headers=headers).json()
            if not body["replica_leads"]:
                workers.add(pid_of(body["replica"]))
                break
        assert workers, "no answer came from the worker"
        server.kill9()  # no chance to stop its workers itself
        deadline = time.monotonic() + 20
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(p) for p in workers), "the worker outlived a killed first process"
    finally:
        server.stop()
        kill_job_processes(data_dir)
