"""SlurmApi over the Slurm commands (sbatch, squeue/sinfo --json, scancel, scontrol)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gpucloud.core.errors import EngineError
from gpucloud.engines.slurm.api import SlurmUnavailable
from gpucloud.engines.slurm.parse import parse_document
from gpucloud.engines.slurm.script import Submission

# What the Slurm commands print when slurmctld does not answer (e.g. while it restarts).
_UNREACHABLE = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "zero bytes were transmitted",
    "slurm_persist_conn_open",
    "communication connection failure",
    "unable to establish controller",
)
# scancel on a job that already ended: nothing to do.
_ALREADY_DONE = ("already completing or completed", "invalid job id specified")


def command_env(slurm_conf: Path | None) -> dict[str, str]:
    """The environment for Slurm commands and for the jobs they submit (sbatch exports its
    own environment to the job): the control plane's, without gpucloud's secrets, without
    variables that would change what sbatch/squeue do (SBATCH_*, SQUEUE_*, SLURM_*), and
    without SLURM_JWT, which switches every command to JWT authentication."""
    skip = ("GPUCLOUD_", "SLURM_", "SBATCH_", "SQUEUE_", "SINFO_", "SCANCEL_", "SRUN_", "SALLOC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    if slurm_conf is not None:
        env["SLURM_CONF"] = str(slurm_conf)
    elif "SLURM_CONF" in os.environ:
        env["SLURM_CONF"] = os.environ["SLURM_CONF"]
    return env


def sbatch_args(sub: Submission) -> list[str]:
    args = [
        "sbatch", "--parsable",
        f"--job-name={sub.name}",
        f"--comment={sub.comment}",
        f"--nodes={len(sub.nodelist)}",
        f"--nodelist={','.join(sub.nodelist)}",
        f"--ntasks-per-node={sub.tasks_per_node}",
        f"--cpus-per-task={sub.cpus_per_task}",
        "--no-requeue",  # gpucloud decides what runs again, not Slurm
        f"--output={sub.output}",
        f"--chdir={sub.workdir}",
        "--export=ALL",
    ]
    if sub.gres:
        args.append(f"--gres={sub.gres}")
    if sub.memory_mib:
        args.append(f"--mem={sub.memory_mib}M")
    if sub.time_limit_min is not None:
        args.append(f"--time={sub.time_limit_min}")
    if sub.partition:
        args.append(f"--partition={sub.partition}")
    args.append(str(sub.script_path))
    return args


# squeue's text output with filters is several times cheaper than --json in 22.05 (whose JSON
# dump of every job is the cost, in squeue and slurmrestd alike): see docs/slurm.md.
_SEP = "\x1f"  # ASCII unit separator: never in a job name or comment
_FIELDS = ("job_id", "job_state", "state_reason", "exit_code", "start_time", "end_time",
           "nodes", "name", "comment")
_FORMAT = ",".join(f"{f}:{_SEP}" for f in (
    "JobID", "State", "Reason", "exit_code", "StartTime", "EndTime", "NodeList", "Name",
    "Comment"))


def parse_squeue_text(out: str) -> list[dict[str, Any]]:
    """``squeue -h -O <_FORMAT>`` lines as squeue --json's job objects (the fields parse reads;
    times are epoch seconds through SLURM_TIME_FORMAT=%s)."""
    jobs = []
    for line in out.splitlines():
        values = line.split(_SEP)
        if len(values) < len(_FIELDS):
            continue
        job: dict[str, Any] = dict(zip(_FIELDS, (v.strip() for v in values), strict=False))
        if not job["job_id"].isdigit():  # an array's "123_[1-5]": not gpucloud's
            continue
        if job["comment"] == "(null)":
            job["comment"] = ""
        jobs.append(job)
    return jobs


class CliApi:
    name = "cli"

    def __init__(self, slurm_conf: Path | None, timeout_s: float = 30.0) -> None:
        self.slurm_conf = slurm_conf
        self.timeout_s = timeout_s
        self._env = command_env(slurm_conf)

    def _run(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        try:
            done = subprocess.run(
                list(args), env=dict(env if env is not None else self._env),
                capture_output=True, text=True, timeout=self.timeout_s, check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as err:
            raise EngineError(f"{args[0]} is not on PATH: install the Slurm client "
                              "(Debian: slurm-client)") from err
        except subprocess.TimeoutExpired as err:
            raise SlurmUnavailable(f"{args[0]} did not answer within {self.timeout_s:g}s") from err
        if done.returncode != 0:
            detail = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
            if any(marker in detail.lower() for marker in _UNREACHABLE):
                raise SlurmUnavailable(f"{args[0]}: {detail}")
            raise EngineError(f"{args[0]} failed: {detail}")
        return done.stdout

    def _json(self, args: Sequence[str], key: str) -> list[Mapping[str, Any]]:
        out = self._run(args)
        try:
            doc = json.loads(out)
        except json.JSONDecodeError as err:
            raise EngineError(f"{' '.join(args)}: not JSON: {out[:200]!r}") from err
        return parse_document(doc, key, " ".join(args))

    def version(self) -> str:
        out = self._run(["sinfo", "--version"])  # "slurm 22.05.8"
        self._run(["scontrol", "ping"])  # fails (SlurmUnavailable) when slurmctld is down
        return out.split()[-1] if out.split() else "unknown"

    def nodes(self) -> list[Mapping[str, Any]]:
        return self._json(["sinfo", "--json"], "nodes")

    def jobs(self) -> list[Mapping[str, Any]]:
        out = self._run(["squeue", "--noheader", "--states=all", f"--Format={_FORMAT}"],
                        env={**self._env, "SLURM_TIME_FORMAT": "%s"})
        return list(parse_squeue_text(out))

    def jobs_json(self) -> list[Mapping[str, Any]]:
        """``squeue --json`` (the benchmark compares it with ``jobs``)."""
        return self._json(["squeue", "--json"], "jobs")

    def submit(self, submission: Submission, env: Mapping[str, str]) -> int:
        # sbatch, and the job's own srun, read the same slurm.conf as every other command.
        conf = {"SLURM_CONF": self._env["SLURM_CONF"]} if "SLURM_CONF" in self._env else {}
        out = self._run(sbatch_args(submission), env={**env, **conf}).strip()
        try:
            return int(out.split(";", 1)[0])  # --parsable: "id" or "id;cluster"
        except ValueError as err:
            raise EngineError(f"sbatch printed {out!r}, not a job id") from err

    def _scancel(self, args: list[str]) -> None:
        try:
            self._run(["scancel", *args])
        except SlurmUnavailable:
            raise
        except EngineError as err:
            if not any(marker in str(err).lower() for marker in _ALREADY_DONE):
                raise

    def cancel(self, job_id: int) -> None:
        self._scancel([str(job_id)])

    def signal(self, job_id: int, signal: str) -> None:
        self._scancel([f"--signal={signal}", "--full", str(job_id)])

    def update_node(self, node: str, state: str, reason: str | None = None) -> None:
        args = ["scontrol", "update", f"nodename={node}", f"state={state}"]
        if reason is not None:
            args.append(f"reason={reason}")
        self._run(args)
