"""``gpucloud up --engine slurm`` refuses to start without what it needs, in one line that says
what to fix. No Slurm needed: these run everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.slurm.cluster import clean_env
from tests.servers import free_port


def up(tmp_path: Path, path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(), "PATH": path}
    return subprocess.run(
        [sys.executable, "-m", "gpucloud.cli.main", "up", "--engine", "slurm",
         "--data-dir", str(tmp_path / "data"), "--port", str(free_port()), *extra],
        env=env, capture_output=True, text=True, timeout=60, check=False)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_without_the_slurm_commands_it_says_to_install_them(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    line = one_error_line(up(tmp_path, str(empty)))
    assert "needs sbatch, squeue, sinfo, scancel, scontrol on PATH" in line
    assert "slurm-client" in line and "--slurm-rest-url" in line


def test_a_missing_slurm_conf_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    for command in ("sbatch", "squeue", "sinfo", "scancel", "scontrol"):
        (fake / command).write_text("#!/bin/sh\nexit 0\n")
        (fake / command).chmod(0o755)
    line = one_error_line(up(tmp_path, str(fake), "--slurm-conf", str(tmp_path / "nope.conf")))
    assert f"--slurm-conf {tmp_path / 'nope.conf'}: no such file" in line


def test_rest_without_a_url_or_token_says_which(tmp_path: Path) -> None:
    line = one_error_line(up(tmp_path, "/usr/bin:/bin", "--slurm-api", "rest"))
    assert "--slurm-rest-url" in line
    line = one_error_line(up(tmp_path, "/usr/bin:/bin", "--slurm-api", "rest",
                             "--slurm-rest-url", "http://127.0.0.1:1"))
    assert "SLURMRESTD_TOKEN" in line
