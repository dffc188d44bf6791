"""gpucloud up refuses out-of-range --workers and --auth-cache-s before it starts anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpucloud.cli.main import main


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--workers", "0", "--workers must be between 1 and 64, got 0"),
    ("--workers", "65", "--workers must be between 1 and 64, got 65"),
    ("--auth-cache-s", "-1", "--auth-cache-s must be between 0 and 60, got -1"),
    ("--auth-cache-s", "61", "--auth-cache-s must be between 0 and 60, got 61"),
])
def test_out_of_range_flags_are_refused_and_nothing_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, says: str
) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(SystemExit) as exit_info:
        main(["up", "--data-dir", str(data_dir), flag, value])
    assert exit_info.value.code == 2
    assert says in capsys.readouterr().err
    assert not data_dir.exists()
