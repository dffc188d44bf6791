"""The engine's files on the shared file system, one directory per launch.

Layout under the engine's shared directory (it must be visible to every Slurm node)::

    runs/<launch_id>/   batch.sh task.sh env-<rank>.sh (0600)   written before sbatch
                        slurm_job_id    the Slurm job (written as sbatch returns)
                        started         the batch script began (holds $SLURM_JOB_ID)
                        exit-<rank>     each node's command ended with this code
                        exit_code       the whole launch ended (srun's, or the one task's code)
                        final.json      Slurm's terminal record, copied before MinJobAge drops it
                        rank-<rank>.log each node's output; batch.log: the batch script's
    jobs/<job_id>/work/ and checkpoint/
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from gpucloud.core.errors import EngineError
from gpucloud.engines.slurm.parse import SlurmJob
from gpucloud.engines.slurm.script import RunPaths
from gpucloud.engines.slurm.status import ExitFile, RunFiles

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_RANK_EXIT = re.compile(r"exit-(\d+)")


def safe_id(kind: str, value: str) -> str:
    """Ids become path components: refuse anything that could leave the directory."""
    if not _SAFE_ID.fullmatch(value):
        raise EngineError(f"invalid {kind} {value!r}")
    return value


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


class RunDirs:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)

    def run_dir(self, launch_id: str) -> Path:
        return self.runs / safe_id("launch id", launch_id)

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / safe_id("job id", job_id)

    def paths(self, launch_id: str, job_id: str) -> RunPaths:
        return RunPaths(self.run_dir(launch_id), self.job_dir(job_id) / "work")

    def checkpoint_dir(self, job_id: str) -> Path:
        path = self.job_dir(job_id) / "checkpoint"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    @contextlib.contextmanager
    def locked(run_dir: Path) -> Iterator[None]:
        """One launcher at a time per launch, across processes too."""
        fd = os.open(run_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- the Slurm job id ----------------------------------------------------------------------

    @staticmethod
    def read_job_id(run_dir: Path) -> int | None:
        for name in ("slurm_job_id", "started"):  # the batch script writes its id on start
            try:
                return int((run_dir / name).read_text().strip())
            except (FileNotFoundError, ValueError):
                continue
        return None

    @staticmethod
    def write_job_id(run_dir: Path, job_id: int) -> None:
        write_atomic(run_dir / "slurm_job_id", f"{job_id}\n")

    # -- what the batch script left ------------------------------------------------------------

    @staticmethod
    def _exit_file(path: Path) -> ExitFile | None:
        try:
            text = path.read_text()
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            return ExitFile(int(text.strip()), mtime)
        except ValueError as err:  # written atomically (mv), so this is corruption
            raise EngineError(f"{path}: unreadable exit code {text[:40]!r}") from err

    def read_files(self, run_dir: Path) -> RunFiles:
        ranks = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(run_dir):
                match = _RANK_EXIT.fullmatch(entry.name)
                if match:
                    found = self._exit_file(Path(entry.path))
                    if found is not None:
                        ranks[int(match.group(1))] = found
        return RunFiles(
            started=(run_dir / "started").exists(),
            batch_exit=self._exit_file(run_dir / "exit_code"),
            rank_exits=ranks,
        )

    @staticmethod
    def started(run_dir: Path) -> bool:
        return (run_dir / "started").exists()

    # -- Slurm's terminal record ---------------------------------------------------------------

    @staticmethod
    def read_final(run_dir: Path) -> SlurmJob | None:
        try:
            data = json.loads((run_dir / "final.json").read_text())
        except FileNotFoundError:
            return None
        except ValueError as err:
            raise EngineError(f"{run_dir}/final.json is not JSON") from err
        data.pop("extra", None)
        data["nodes"] = tuple(data.get("nodes", ()))
        return SlurmJob(**data)

    @staticmethod
    def write_final(run_dir: Path, job: SlurmJob) -> None:
        record = asdict(job)
        record.pop("extra", None)
        write_atomic(run_dir / "final.json", json.dumps(record) + "\n")
