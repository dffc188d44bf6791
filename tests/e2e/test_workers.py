"""gpucloud up --workers 2: two API processes answer on one port, the process that was started
runs the controllers (it holds the lease and serves no API), work submitted to either worker
runs, a worker that dies is replaced, and the workers stop with the supervisor."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.servers import kill_job_processes, start_server


def pid_of(replica: str) -> int:
    return int(replica.split(":")[2])  # host@ns:port:pid:nonce (store/leader.replica_id)


def answering(url: str, headers: dict[str, str], want: int) -> dict[str, bool]:
    """Replica id -> leads, of the processes that answered (a new connection each call:
    the kernel picks a process per connection)."""
    answers: dict[str, bool] = {}
    for _ in range(80):
        try:
            body = httpx.get(f"{url}/v1/admin/leader", headers=headers).json()
        except httpx.HTTPError:
            continue  # a connection to the worker that was just killed
        answers[body["replica"]] = body["replica_leads"]
        if len(answers) == want:
            break
    return answers


def gone(pids: set[int], timeout_s: float = 20) -> bool:
    """Whether every one of ``pids`` has exited within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(alive(p) for p in pids)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_api_workers_share_the_port_and_the_supervisor_leads(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, None, "--workers", "2", "--simulate-gpus", "2xH100")
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        answers = answering(server.url, headers, 2)
        assert len(answers) == 2, f"one process answered every connection: {answers}"
        assert not any(answers.values())  # API processes run no controllers
        holder = httpx.get(f"{server.url}/v1/admin/leader", headers=headers).json()["holder"]
        assert pid_of(holder) == server.process.pid  # the supervisor holds the lease

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

        first, second = (pid_of(r) for r in answers)
        os.kill(first, signal.SIGKILL)  # the supervisor starts another in its place
        deadline = time.monotonic() + 60
        replaced: dict[str, bool] = {}
        while time.monotonic() < deadline:
            replaced = answering(server.url, headers, 2)
            if len(replaced) == 2 and first not in {pid_of(r) for r in replaced}:
                break
            time.sleep(0.5)
        pids = {pid_of(r) for r in replaced}
        assert len(pids) == 2 and first not in pids and second in pids, replaced

        server.stop()
        assert gone(pids), "a worker outlived the supervisor"
    finally:
        server.stop()
        kill_job_processes(data_dir)


def test_the_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, None, "--workers", "2", "--simulate-gpus", "1xH100")
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        workers = {pid_of(r) for r in answering(server.url, headers, 2)}
        assert len(workers) == 2, workers
        server.kill9()  # the supervisor: no chance to stop its workers itself
        assert gone(workers), "the worker outlived a killed first process"
    finally:
        server.stop()
        kill_job_processes(data_dir)
