"""An instance on a real Slurm cluster: a long Slurm job, and ``instance shell`` into it as an
overlapping ``srun --pty`` step with the instance's GPUs, environment and disk."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import Cloud, wait_for
from tests.e2e.test_instances_cli import (
    jupyter_answers_through_the_proxy,
    shell,
    shell_on_a_tty,
    state_of,
    wait_deleted,
)
from tests.integration.slurm.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def steps_of(slurm: SlurmCluster, job_id: str) -> list[str]:
    """The job's steps Slurm runs now (``squeue -s``): the batch step, and any shell."""
    out = slurm.run("squeue", "-h", "-s", "-j", job_id, "-o", "%i").stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def slurm_job_of(cloud: Cloud, slurm: SlurmCluster, name: str) -> str:
    job = cloud.json("instance", "show", name)["job_id"]
    ran = next(j for j in slurm.jobs() if f"job={job} " in j.get("comment", ""))
    assert ran["job_state"] == "RUNNING"
    return str(ran["job_id"])


def test_a_shell_into_an_instance_on_slurm(cloud: Cloud, slurm: SlurmCluster) -> None:
    cloud.json("instance", "create", "--name", "sbox", "--gpus", "1", "--gpu-type", "H100",
               "--cpus", "0.5", "--memory", "256M", "--disk", "1G")
    state_of(cloud, "sbox", "RUNNING")
    job_id = slurm_job_of(cloud, slurm, "sbox")

    first = shell(cloud, "sbox", 'echo "gpus=[$CUDA_VISIBLE_DEVICES] node=$SLURMD_NODENAME '
                  'job=$SLURM_JOB_ID at=$PWD"; echo kept > ~/notes.txt\n')
    assert first.returncode == 0, first.stderr
    assert f"job={job_id}" in first.stdout
    gpus = first.stdout.split("gpus=[")[-1].split("]")[0]
    assert gpus and all(part.isdigit() for part in gpus.split(",")), first.stdout
    assert "/instance/home" in first.stdout.split(" at=")[-1]  # starts in the instance's disk

    code, screen = shell_on_a_tty(cloud, "sbox", b"stty size; echo tty-$((6*7))\rexit 3\r",
                                  rows=33, cols=101)
    assert code == 3, screen
    assert "33 101" in screen and "tty-42" in screen
    # The shells' steps ended with them: only the instance's own (batch) step is left.
    wait_for(lambda: steps_of(slurm, job_id) == [f"{job_id}.batch"] or None,
             "the shell steps to end", timeout=30)

    # A client that goes away mid-command: the server ends srun, and Slurm the step.
    client = subprocess.Popen(
        [sys.executable, "-m", "gpucloud.cli.main", "instance", "shell", "sbox"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=cloud.env())
    assert client.stdin is not None
    client.stdin.write(b"sleep 600\n")
    client.stdin.flush()
    wait_for(lambda: len(steps_of(slurm, job_id)) == 2 or None, "the shell's step", timeout=30)
    client.kill()
    client.wait(timeout=10)
    wait_for(lambda: steps_of(slurm, job_id) == [f"{job_id}.batch"] or None,
             "the abandoned shell's step to end", timeout=60)

    cloud.ok("instance", "stop", "sbox")
    state_of(cloud, "sbox", "STOPPED")
    refused = shell(cloud, "sbox", "echo never\n")
    assert refused.returncode != 0 and "never" not in refused.stdout
    cloud.ok("instance", "start", "sbox")
    state_of(cloud, "sbox", "RUNNING")
    again = shell(cloud, "sbox", "cat ~/notes.txt\n")
    assert "kept" in again.stdout, again.stdout
    cloud.ok("instance", "delete", "sbox")
    wait_deleted(cloud, "sbox")
    assert not [j for j in slurm.jobs() if j["job_state"] in ("RUNNING", "PENDING")]


def test_a_jupyter_server_in_an_instance_on_slurm_answers_through_the_proxy(
        cloud: Cloud, slurm: SlurmCluster) -> None:
    """The server runs in the Slurm job on its node; the proxy finds it through its runtime
    file on the shared directory."""
    cloud.json("instance", "create", "--name", "slab", "--gpus", "1", "--gpu-type", "H100",
               "--cpus", "0.5", "--memory", "512M", "--jupyter")
    state_of(cloud, "slab", "RUNNING")
    slurm_job_of(cloud, slurm, "slab")
    written = shell(cloud, "slab", "echo hello > ~/from-slurm.txt\n")
    assert written.returncode == 0, written.stderr
    jupyter_answers_through_the_proxy(cloud, "slab", "from-slurm.txt", timeout=120)
    cloud.ok("instance", "delete", "slab")
    wait_deleted(cloud, "slab")
