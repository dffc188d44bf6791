"""Settings of one control-plane process (``gpucloud up`` flags, or GPUCLOUD_* variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_data_dir

DEFAULT_PORT = 8470


def default_data_dir() -> Path:
    return Path(user_data_dir("gpucloud", appauthor=False))


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    engine: str = "local"
    simulate_gpus: str | None = None
    database_url: str | None = None  # default: SQLite in data_dir
    stop_grace_s: float = 10.0
    auth_max_failures: int = 20  # failed token checks per client address a minute; 0: no limit
    workers: int = 1  # API processes on the port (api_workers.py)
    auth_cache_s: float = 5.0  # how long a checked token's caller is remembered (api/token_cache)
    # --engine slurm (see docs/slurm.md): the CLI with a slurm.conf, or slurmrestd.
    slurm_conf: Path | None = None  # default: $SLURM_CONF, else /etc/slurm/slurm.conf
    slurm_api: str | None = None  # "cli" or "rest"; default: the CLI where it is installed
    slurm_rest_url: str | None = None
    slurm_rest_token: str | None = None
    slurm_rest_user: str | None = None  # default: the control plane's user
    slurm_partition: str | None = None  # default: every node Slurm reports
    slurm_gpu_model: str | None = None  # the catalog model of untyped GRES ("gpu:8")
    slurm_shared_dir: Path | None = None  # on a file system every node sees; default data_dir/slurm

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def slurm_dir(self) -> Path:
        return self.slurm_shared_dir or self.data_dir / "slurm"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "admin.token"
