"""Task files and 'gpucloud run' flags carry volumes and datasets into the job request."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gpucloud.cli.main import app
from gpucloud.cli.taskfile import build_spec


def test_a_task_file_and_flags_attach_volumes_and_datasets(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("command: python train.py\nvolumes: ['data:/mnt/data']\n"
                    "datasets: [words]\n")
    spec = build_spec(task, {}, [], [])
    assert (spec.volumes, spec.datasets) == (["data:/mnt/data"], ["words"])
    flags = {"volumes": ["other:/x:ro"], "datasets": None}
    spec = build_spec(task, flags, [], [])
    assert (spec.volumes, spec.datasets) == (["other:/x:ro"], ["words"])


def test_run_refuses_a_bad_mount_before_sending_anything() -> None:
    result = CliRunner().invoke(app, ["run", "--dry-run", "--volume", "data", "--", "true"],
                                env={"GPUCLOUD_URL": "http://127.0.0.1:9", "GPUCLOUD_TOKEN": "x"})
    assert result.exit_code != 0  # the console script turns this into 'error: ...', exit 2
    assert "NAME:/absolute/path" in str(result.exception)
