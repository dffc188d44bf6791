"""Which backend a volume gets (``storage.volume_backend``), and that a volume's backend never
changes under it: an existing plain directory is never covered by a new image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpucloud.core.config import parse_setting
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.volumes import VolumeBackend, choose_backend
from gpucloud.engines import volume_loop

LOOP, DIRECTORY = VolumeBackend.LOOP, VolumeBackend.DIRECTORY


@pytest.mark.parametrize(("setting", "local", "supported", "expected"), [
    ("loop", True, True, LOOP),
    ("loop", False, True, DIRECTORY),  # Slurm nodes would not see the control plane's mount
    ("loop", True, False, DIRECTORY),  # not root, or no mkfs.ext4
    ("directory", True, True, DIRECTORY),
])
def test_images_only_where_they_can_work(setting: str, local: bool, supported: bool,
                                          expected: VolumeBackend) -> None:
    assert choose_backend(setting, local, supported) is expected


def test_the_setting_takes_only_known_backends() -> None:
    assert parse_setting("storage.volume_backend", "directory") == "directory"
    with pytest.raises(InvalidRequest, match="loop, directory"):
        parse_setting("storage.volume_backend", "zfs")


def test_a_directory_volume_stays_a_directory(tmp_path: Path) -> None:
    volume = tmp_path / "volumes" / "v1"
    volume_loop.ensure(tmp_path, "v1", 1, DIRECTORY, volume)
    (volume / "kept").write_text("data")
    # The setting changed to loop later: the existing directory (and its data) stays as it is.
    volume_loop.ensure(tmp_path, "v1", 1, LOOP, volume)
    assert (volume / "kept").read_text() == "data"
    assert not os.path.ismount(volume)
    assert not volume_loop.image_path(tmp_path, "v1").exists()


def test_an_image_that_cannot_be_made_leaves_a_directory_volume(tmp_path: Path) -> None:
    """No image (here: its file cannot be created) must not block the launch."""
    (tmp_path / "volume-images" / "v2.new" / "in-the-way").mkdir(parents=True)
    volume = tmp_path / "volumes" / "v2"
    volume_loop.ensure(tmp_path, "v2", 1, LOOP, volume)
    assert volume.is_dir() and not os.path.ismount(volume)
    assert not volume_loop.image_path(tmp_path, "v2").exists()
