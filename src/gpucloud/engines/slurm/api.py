"""The few Slurm operations the engine needs, behind one protocol with two implementations:
the Slurm CLI (``cli.CliApi``: sbatch, squeue/sinfo ``--json``, scancel, scontrol) and
slurmrestd (``rest.RestApi``). Both return Slurm's own JSON objects, which ``parse`` reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from gpucloud.core.errors import EngineUnavailable
from gpucloud.engines.slurm.script import Submission

__all__ = ["SlurmApi", "SlurmUnavailable", "Submission"]


class SlurmUnavailable(EngineUnavailable):
    """slurmctld (or slurmrestd) did not answer: it may be restarting. Retry later (the
    launcher and the control loop do; launch is idempotent, so a retry submits at most once)."""


class SlurmApi(Protocol):
    name: str  # "cli" or "rest", for messages and the benchmark

    def version(self) -> str:
        """Slurm's release, e.g. "22.05.8"; raises SlurmUnavailable when Slurm is down."""
        ...

    def nodes(self) -> list[Mapping[str, Any]]:
        """Every node, as ``sinfo --json``'s node objects."""
        ...

    def jobs(self) -> list[Mapping[str, Any]]:
        """Every job slurmctld holds (finished ones too, for MinJobAge), as squeue's objects."""
        ...

    def submit(self, submission: Submission, env: Mapping[str, str]) -> int:
        """Submit the batch job with ``env`` as its environment; returns the Slurm job id."""
        ...

    def cancel(self, job_id: int) -> None:
        """End the job (Slurm's scancel: SIGTERM, SIGKILL after KillWait). A finished job is
        not an error."""
        ...

    def signal(self, job_id: int, signal: str) -> None:
        """Send ``signal`` ("TERM", "KILL") to every process of the job, batch shell included."""
        ...

    def update_node(self, node: str, state: str, reason: str | None = None) -> None:
        """``scontrol update nodename=NODE state=STATE [reason=REASON]``."""
        ...
