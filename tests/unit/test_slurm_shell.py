"""The shell step of an instance on Slurm, as a command line; what the real step does is in
tests/integration/slurm/test_slurm_instances.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpucloud.core.errors import EngineError
from gpucloud.engines.slurm.cli import CliApi
from gpucloud.engines.slurm.engine import SlurmEngine
from gpucloud.engines.slurm.shell import shell_argv


def test_the_step_overlaps_the_job_on_a_pty_and_sources_rank_0s_environment() -> None:
    argv = shell_argv(41, Path("/shared/runs/alc 1/env-0.sh"))
    assert argv[:4] == ["srun", "--jobid=41", "--overlap", "--pty"]
    script = argv[-1]
    assert script.startswith(". '/shared/runs/alc 1/env-0.sh' || exit")  # quoted path
    assert 'cd "${HOME:-' in script


def test_a_shell_needs_srun_on_the_control_planes_host(tmp_path: Path) -> None:
    engine = SlurmEngine(CliApi(None), tmp_path, job_env={"PATH": str(tmp_path)})
    with pytest.raises(EngineError, match="srun"):
        engine.shell("alc_1")

