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

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "admin.token"
