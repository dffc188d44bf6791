"""Images on a real Slurm cluster: the venv is built on the shared directory once, and a job in
Slurm runs inside it (docs/images.md, "Slurm")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Cloud, wait_for
from tests.integration.slurm.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROBE = 'import os, sys; print("prefix=" + sys.prefix, "image=" + os.environ["GPUCLOUD_IMAGE"])'


def ended(cloud: Cloud, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = cloud.json("show", job_id)
        return job if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    return wait_for(done, f"job {job_id} to end", timeout=120)


def test_a_slurm_job_runs_in_its_image_venv_built_once(cloud: Cloud,
                                                        slurm: SlurmCluster) -> None:
    outputs = []
    for _ in range(2):
        submitted = cloud.json("run", "--gpus", "1", "--image", "cuda-base", "--", "python",
                               "-c", PROBE)
        job = ended(cloud, submitted["id"])
        assert (job["state"], job["exit_code"]) == ("SUCCEEDED", 0), job
        outputs.append(cloud.ok("logs", job["id"]))
    shared = cloud.data_dir / "slurm" / "images" / "nodes"
    assert f"prefix={shared}/" in outputs[0] and "image=cuda-base" in outputs[0], outputs
    built = cloud.json("image", "show", "cuda-base")["nodes"]
    assert built and all(n["state"] == "READY" and n["builds"] == 1 for n in built), built
