"""schemathesis against a real ``gpucloud up`` process, from its own /openapi.json.

``st run`` (schemathesis' CLI, a second process) sends generated requests, valid and invalid,
to every operation of the document, in its examples, coverage and fuzzing phases: once as a
tenant's admin and once as the operator. For every answer: never a 5xx (``not_a_server_error``);
a 2xx has the content type and body its schema promises; no 401/429 to a request that carried
the fuzzer's token (the run must not lock itself out). At the end the same server process still
answers /healthz, both tokens still work, and its log holds no traceback.

Bounded for CI: GPUCLOUD_FUZZ_EXAMPLES (default 5) examples per operation in the fuzzing phase.
CI (GPUCLOUD_HYPOTHESIS_PROFILE=ci) replays one fixed seed, so a landing is never refused by an
example nobody has seen; a local run draws a new seed each time (GPUCLOUD_FUZZ_SEED replays
one). What a run finds becomes a test in tests/integration/test_fuzz_regressions.py.

    GPUCLOUD_FUZZ_EXAMPLES=200 .venv/bin/python -m pytest -q tests/fuzz
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import Server, kill_job_processes, start_server

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("GPUCLOUD_FUZZ_EXAMPLES", "5"))
CI_SEED = 20261202
HOOKS = Path(__file__).with_name("st_checks.py")
CHECKS = "not_a_server_error,conforms_when_successful,not_locked_out"
# Revoking a token by an id read from GET /v1/tokens revokes the fuzzer's own token: every later
# request would be a 401 that tests nothing. test_security_routes.py proves the route's scoping.
EXCLUDED_OPERATIONS = ["revoke_token_v1_tokens__token_id__delete"]
# The operator's own routes answer a tenant 403 before reading anything (test_security_routes.py
# proves it for each); the tenant's run spends its time on the routes a tenant can use.
OPERATOR_ONLY = r"^/(v1/admin/|v1/debug/|metrics)"


@dataclass
class Live:
    server: Server
    tokens: dict[str, str]  # role -> bearer token


def _seed() -> str | None:
    if os.environ.get("GPUCLOUD_FUZZ_SEED"):
        return os.environ["GPUCLOUD_FUZZ_SEED"]
    return str(CI_SEED) if os.environ.get("GPUCLOUD_HYPOTHESIS_PROFILE") == "ci" else None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    # No token-guessing limit: the fuzzer sends thousands of requests from one address.
    server = start_server(data_dir, None, "--simulate-gpus", "8xH100", "--auth-max-failures", "0")
    try:
        admin = httpx.Client(
            base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {server.token}"}
        )
        admin.post("/v1/tenants", json={"name": "fuzz"}).raise_for_status()
        user = admin.post(
            "/v1/users", json={"name": "fuzz-admin", "tenant": "fuzz", "role": "admin"}
        )
        user.raise_for_status()
        topup = {"tenant": "fuzz", "amount": "1000", "ref": "fuzz-first"}
        admin.post("/v1/admin/topups", json=topup).raise_for_status()
        tenant_token: str = user.json()["token"]
        # A few real objects, so that ids the fuzzer reads from listings reach past the 404s.
        tenant = httpx.Client(
            base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {tenant_token}"}
        )
        for gpus in (1, 8, 1):
            job = {"command": ["sleep", "600"], "gpus": gpus}
            tenant.post("/v1/jobs", json=job).raise_for_status()
        yield Live(server, {"tenant": tenant_token, "operator": server.token})
    finally:
        server.stop()
        kill_job_processes(data_dir)


def run_schemathesis(live: Live, role: str, cwd: Path) -> tuple[int, str]:
    seed = _seed()
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{live.server.url}/openapi.json",
        "--header", f"Authorization: Bearer {live.tokens[role]}",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(EXAMPLES),
        "--request-timeout", "30",
        "--generation-database", "none",
        "--workers", "1",
        "--no-color",
        *(["--seed", seed] if seed else []),
        *[arg for op in EXCLUDED_OPERATIONS for arg in ("--exclude-operation-id", op)],
        *(["--exclude-path-regex", OPERATOR_ONLY] if role == "tenant" else []),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("role", ["tenant", "operator"])
def test_fuzz_every_operation(live: Live, role: str, tmp_path: Path) -> None:
    status, output = run_schemathesis(live, role, tmp_path)
    assert status == 0, output
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", output)
    assert selected and int(selected.group(1)) >= int(selected.group(2)) // 2, output
    generated = re.search(r"(\d+) generated, \1 passed", output)
    assert generated and int(generated.group(1)) >= EXAMPLES * int(selected.group(1)), output


def test_server_still_up(live: Live) -> None:
    assert live.server.process.poll() is None, "the server process exited during the fuzz run"
    assert httpx.get(f"{live.server.url}/healthz", timeout=10).status_code == 200
    for role, token in live.tokens.items():
        who = httpx.get(
            f"{live.server.url}/v1/whoami", timeout=10, headers={"Authorization": f"Bearer {token}"}
        )
        assert who.status_code == 200, f"{role}: {who.status_code} {who.text}"
    log = live.server.log.read_text(errors="replace")
    assert "Traceback" not in log and "unhandled error" not in log, log[-4000:]
