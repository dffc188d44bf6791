"""What gpucloud adds on top of Slurm: N short jobs through gpucloud vs N through raw sbatch.

Starts (or reuses) the 4-node test cluster of ../shared/slurm/start-slurm.sh (NODES=4
GPUS_PER_NODE=8, its default state dir and ports), then on the same cluster, in one run:

  raw       N x `sbatch --wrap true` (1 CPU, 1 GiB, --no-requeue), one after another, until
            Slurm has finished them all;
  gpucloud  `gpucloud up --engine slurm` (fresh data dir), N x POST /v1/jobs of `true` with the
            same shape, one after another, until gpucloud reports them all ended.

Both are timed from the first submission to the last job's end; `ratio` = gpucloud_s / raw_s.
Each side also reports when its last submission returned, and the CPU it used: raw, its sbatch
and squeue commands; gpucloud, the control plane's process and the Slurm commands it ran (on
a machine that also runs every Slurm daemon, CPU taken from Slurm).
The raw run goes first, so gpucloud's job listings also carry the raw jobs that squeue keeps
for MinJobAge (the harder case for it). Then it measures the two Slurm APIs of the engine (the
CLI's JSON and slurmrestd) call by call: listing jobs (with the ~2N jobs squeue now holds),
listing nodes, submitting; and, for listing jobs, the text output of `squeue -O` that the
engine's CLI API uses instead of `squeue --json`.

    python bench/slurm_overhead.py [--jobs 500] [--json] [--api cli|rest]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.integration.slurm.cluster import START, SlurmCluster, clean_env, start_cloud  # noqa: E402

from bench.machine import describe  # noqa: E402
from gpucloud.engines.slurm.cli import CliApi  # noqa: E402
from gpucloud.engines.slurm.rest import RestApi  # noqa: E402
from gpucloud.engines.slurm.script import Submission  # noqa: E402

ACTIVE_STATES = ("PENDING", "QUEUED", "SCHEDULED", "STARTING", "RUNNING")
JOB = {"command": ["true"], "cpus": 1, "memory_mib": 1024}


def start_or_reuse_cluster() -> SlurmCluster:
    done = subprocess.run(["bash", str(START)], env={**clean_env(), "NODES": "4",
                                                     "GPUS_PER_NODE": "8"},
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        sys.exit(f"start-slurm.sh failed: {done.stderr[-2000:]}")
    exports = dict(line.removeprefix("export ").split("=", 1)
                   for line in done.stdout.splitlines() if line.startswith("export "))
    return SlurmCluster(exports)


def wait_idle(cluster: SlurmCluster, timeout_s: float = 300) -> None:
    """No job pending or running, so that each run starts on an empty cluster."""
    deadline = time.monotonic() + timeout_s
    while cluster.run("squeue", "-h", "-t", "PD,R,CG,CF", "-o", "%i").stdout.strip():
        if time.monotonic() > deadline:
            sys.exit("the cluster did not become idle; cancel its jobs first")
        time.sleep(0.2)


def raw_run(cluster: SlurmCluster, jobs: int) -> tuple[float, float, float]:
    """Seconds until the last submission returned and until the last job ended, and the CPU
    seconds its sbatch and squeue commands used."""
    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    args = ["sbatch", "--parsable", f"--job-name={name}", "--output=/dev/null",
            "--cpus-per-task=1", "--mem=1024M", "--no-requeue", "--wrap", "true"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for _ in range(jobs):
        cluster.run(*args)
    submitted = time.perf_counter() - start
    while cluster.run("squeue", "-h", "-n", name, "-t", "PD,R,CG,CF", "-o", "%i").stdout.strip():
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    commands_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return submitted, elapsed, commands_cpu


def cpu_s(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of a process so far, and of its ended children (the Slurm
    commands it ran), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def gpucloud_run(cluster: SlurmCluster, jobs: int, api: str,
                 data_dir: Path) -> tuple[float, float, tuple[float, float], Any]:
    """Seconds until the last submission returned and until the last job ended, and the CPU
    seconds the control plane used meanwhile."""
    server = start_cloud(data_dir, cluster, api=api)
    try:
        client = httpx.Client(base_url=server.url, timeout=60,
                              headers={"Authorization": f"Bearer {server.token}"})
        cpu_before = cpu_s(server.process.pid)
        start = time.perf_counter()
        for _ in range(jobs):
            client.post("/v1/jobs", json=JOB,
                        headers={"Idempotency-Key": str(uuid.uuid4())}).raise_for_status()
        submitted = time.perf_counter() - start
        while client.get("/v1/jobs", params={"state": list(ACTIVE_STATES), "limit": 1}
                         ).json()["items"]:
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        cpu_after = cpu_s(server.process.pid)
        server_cpu = (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1])
        states: dict[str, int] = {}
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/jobs", params=params).json()
            for job in page["items"]:
                states[job["state"]] = states.get(job["state"], 0) + 1
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return submitted, elapsed, server_cpu, states
    finally:
        server.stop()


def median_ms(n: int, call: Callable[[], object]) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def compare_apis(cluster: SlurmCluster, scratch: Path) -> dict[str, Any]:
    cli = CliApi(Path(cluster.conf))
    rest = RestApi(cluster.exports["SLURMRESTD_URL"], cluster.exports["SLURMRESTD_TOKEN"],
                   "root", version=cluster.exports.get("SLURMRESTD_API_VERSION", "v0.0.38"))
    scratch.mkdir(parents=True, exist_ok=True)
    script = scratch / "bench.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    submission = Submission(
        name="bench-api", comment="bench", script=script.read_text(), script_path=script,
        nodelist=("gpu-node-0",), tasks_per_node=1, gres=None, cpus_per_task=1,
        memory_mib=1024, time_limit_min=None, partition=None, output=Path("/dev/null"),
        workdir=scratch)
    env = {**clean_env(), "SLURM_CONF": cluster.conf}
    held = len(cli.jobs())
    figures = {
        "jobs_listed": held,
        "list_jobs_ms": {"cli": median_ms(10, cli.jobs_json), "cli_text": median_ms(10, cli.jobs),
                         "rest": median_ms(10, rest.jobs)},
        "list_nodes_ms": {"cli": median_ms(20, cli.nodes), "rest": median_ms(20, rest.nodes)},
        "submit_ms": {"cli": median_ms(20, lambda: cli.submit(submission, env)),
                      "rest": median_ms(20, lambda: rest.submit(submission, env))},
    }
    rest.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--api", choices=("cli", "rest"), default="cli",
                        help="the Slurm API gpucloud's engine uses (default: cli)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cluster = start_or_reuse_cluster()
    version = cluster.run("sinfo", "--version").stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        wait_idle(cluster)
        raw_submitted_s, raw_s, raw_cpu_s = raw_run(cluster, args.jobs)
        wait_idle(cluster)
        gpucloud_submitted_s, gpucloud_s, server_cpu_s, states = gpucloud_run(
            cluster, args.jobs, args.api, Path(tmp) / "data")
        wait_idle(cluster)
        apis = compare_apis(cluster, Path(tmp) / "api")
        wait_idle(cluster)
    result = {
        "jobs": args.jobs,
        "engine_api": args.api,
        "raw_s": round(raw_s, 2),
        "gpucloud_s": round(gpucloud_s, 2),
        "ratio": round(gpucloud_s / raw_s, 3),
        "raw_submitted_s": round(raw_submitted_s, 2),  # the last submission returned
        "raw_commands_cpu_s": round(raw_cpu_s, 2),
        "gpucloud_submitted_s": round(gpucloud_submitted_s, 2),
        # The control plane's CPU during its half: on a machine that also runs every Slurm
        # daemon, this is time taken from Slurm.
        "gpucloud_server_cpu_s": round(server_cpu_s[0], 2),
        "gpucloud_slurm_commands_cpu_s": round(server_cpu_s[1], 2),  # its sbatch and squeue
        "gpucloud_states": states,
        "slurm": version,
        "nodes": len(cluster.nodes),
        "apis": {k: ({kk: round(vv, 1) for kk, vv in v.items()} if isinstance(v, dict) else v)
                 for k, v in apis.items()},
        "machine": describe(),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{version}, {len(cluster.nodes)} nodes; machine: {result['machine']}")
    print(f"{args.jobs} jobs of `true` (1 CPU, 1 GiB), first submission to last end:")
    print(f"  raw sbatch     {raw_s:7.2f} s  ({args.jobs / raw_s:5.1f} jobs/s; last submission "
          f"returned at {raw_submitted_s:.2f} s; its commands' CPU {raw_cpu_s:.2f} s)")
    print(f"  gpucloud       {gpucloud_s:7.2f} s  ({args.jobs / gpucloud_s:5.1f} jobs/s, "
          f"engine API {args.api}; last submission returned at {gpucloud_submitted_s:.2f} s; "
          f"end states {states})")
    print(f"  control plane CPU during its run: {server_cpu_s[0]:.2f} s "
          f"({server_cpu_s[0] * 1000 / args.jobs:.1f} ms per job), and its Slurm commands' "
          f"{server_cpu_s[1]:.2f} s")
    print(f"  ratio          {gpucloud_s / raw_s:7.3f}  (target <= 1.10)")
    print(f"Slurm APIs, median ms per call (squeue holds {apis['jobs_listed']} jobs):")
    print("  call          CLI --json   slurmrestd   CLI text (squeue -O, what the engine uses)")
    for key, label in (("list_jobs_ms", "list jobs"), ("list_nodes_ms", "list nodes"),
                       ("submit_ms", "submit")):
        text = apis[key].get("cli_text")
        print(f"  {label:12s} {apis[key]['cli']:10.1f}   {apis[key]['rest']:10.1f}"
              + (f"   {text:10.1f}" if text is not None else ""))


if __name__ == "__main__":
    main()
