"""Volumes and datasets on a real Slurm cluster, through the CLI: the directories are on the
shared directory, the batch script exports GPUCLOUD_VOLUME_*/GPUCLOUD_DATASET_* and links each
volume at its path inside the job's working directory; the test cluster runs jobs as root, so
the task also bind-mounts each volume at its path in a mount namespace of its own, ':ro' and
the dataset store read-only (docs/storage.md, "Launch")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cloud, wait_for
from tests.integration.slurm.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def ended(cloud: Cloud, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = cloud.json("show", job_id)
        return job if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    return wait_for(done, f"job {job_id} to end", timeout=120)


def run(cloud: Cloud, *args: str) -> str:
    submitted = cloud.json("run", "--cpus", "0.5", "--memory", "256M", *args)
    job = ended(cloud, submitted["id"])
    logs = cloud.ok("logs", job["id"])
    assert (job["state"], job["exit_code"]) == ("SUCCEEDED", 0), (job, logs)
    return logs


def test_a_slurm_job_writes_a_volume_the_next_reads_and_reads_a_dataset(
        cloud: Cloud, slurm: SlurmCluster, tmp_path: Path) -> None:
    volume = cloud.json("volume", "create", "shared-vol", "--size", "1G")
    run(cloud, "--volume", "shared-vol:/data", "--", "sh", "-c",
        'echo first > "$GPUCLOUD_VOLUME_SHARED_VOL/a" && echo linked > data/b')
    logs = run(cloud, "--volume", "shared-vol:/mnt/gpucloud-slurm-rw", "--", "sh", "-c",
               'cat "$GPUCLOUD_VOLUME_SHARED_VOL/a" /mnt/gpucloud-slurm-rw/b; '
               'echo "at=$GPUCLOUD_VOLUME_SHARED_VOL"')
    assert "first" in logs and "linked" in logs  # the mount, at the requested path
    assert f"at={cloud.data_dir / 'slurm' / 'storage' / 'volumes' / volume['id']}" in logs
    logs = run(cloud, "--volume", "shared-vol:/mnt/gpucloud-slurm-ro:ro", "--", "sh", "-c",
               'cat /mnt/gpucloud-slurm-ro/a; for f in /mnt/gpucloud-slurm-ro/x '
               '"$GPUCLOUD_VOLUME_SHARED_VOL/x"; do touch "$f" 2>/dev/null && echo "WROTE $f" '
               '|| echo refused; done')
    assert logs.count("refused") == 2 and "WROTE" not in logs, logs  # root included
    assert "first" in logs
    assert not Path("/mnt/gpucloud-slurm-ro/a").exists()  # the host never sees the mount
    source = tmp_path / "words"
    source.mkdir()
    (source / "w.txt").write_text("from the dataset\n")
    pushed = cloud.json("dataset", "push", "slurm-words", str(source))
    logs = run(cloud, "--dataset", f"slurm-words:{pushed['version']}", "--", "sh", "-c",
               'cat "$GPUCLOUD_DATASET_SLURM_WORDS/w.txt"; '
               'touch "$GPUCLOUD_DATASET_SLURM_WORDS/new" 2>/dev/null || echo ds-refused')
    assert "from the dataset" in logs and "ds-refused" in logs, logs
    cloud.ok("volume", "delete", "shared-vol")
