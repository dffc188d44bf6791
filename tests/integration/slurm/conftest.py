"""Fixtures of the Slurm tests: one real cluster per session, one gpucloud on it per session.

The cluster comes from ../shared/slurm/start-slurm.sh (resolved from the repository root).
Without that script the tests that need it are skipped, saying why, unless
GPUCLOUD_REQUIRE_SLURM=1 (CI), which makes them fail; when the script is there and Slurm does
not start, they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cloud, wait_for
from tests.integration.slurm.cluster import (
    DIR_PREFIX,
    START,
    SlurmCluster,
    start_cloud,
    start_cluster,
    stop_cluster,
    stop_stale_clusters,
)

REQUIRE_SLURM = os.environ.get("GPUCLOUD_REQUIRE_SLURM") == "1"


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    if not START.exists():
        message = f"no Slurm test cluster recipe at {START}"
        if REQUIRE_SLURM:
            pytest.fail(f"Slurm is required (GPUCLOUD_REQUIRE_SLURM=1): {message}")
        pytest.skip(message)
    stop_stale_clusters()
    try:
        cluster = start_cluster(Path("/tmp") / f"{DIR_PREFIX}{os.getpid()}")
    except RuntimeError as err:
        pytest.fail(f"the Slurm test cluster did not start: {err}")
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="session")
def slurm_cloud(slurm: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """gpucloud up --engine slurm (the CLI API), shared by the tests that do not restart it."""
    base = tmp_path_factory.mktemp("slurm-cloud")
    server = start_cloud(base / "data", slurm, "--stop-grace-s", "2")
    home = base / "home"
    home.mkdir()
    try:
        token = wait_for(lambda: server.token if (server.data_dir / "admin.token").exists()
                         else None, "the admin token file")
        yield Cloud(server.url, token, server.data_dir, home)
    finally:
        server.stop()


def restore_fleet(cloud: Cloud, slurm: SlurmCluster) -> None:
    """Every node back in service in Slurm and in gpucloud (whose self-healing quarantines a
    node Slurm reported down, and drains it in Slurm until it is returned)."""
    slurm.resume_all()

    def healthy() -> list[dict[str, Any]] | None:
        nodes: list[dict[str, Any]] = cloud.json("nodes")
        return nodes if all(n["health"] == "healthy" for n in nodes) else None

    for node in wait_for(healthy, "every node to be healthy again", timeout=60):
        if node["quarantined"]:
            cloud.ok("node", "return", node["id"])
    wait_for(lambda: not any("DRAIN" in slurm.node(n)["state_flags"] for n in slurm.nodes),
             "gpucloud to resume its drains", timeout=60)


@pytest.fixture
def cloud(slurm_cloud: Cloud, slurm: SlurmCluster) -> Iterator[Cloud]:
    """The shared gpucloud, with a free fleet after each test."""
    yield slurm_cloud
    slurm_cloud.settle()
    restore_fleet(slurm_cloud, slurm)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A file whose creation lets gated jobs finish: tests decide when, never a sleep."""
    path = tmp_path / "gate"
    yield path
    path.touch()
