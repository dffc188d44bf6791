import pytest

from gpucloud.core.errors import InvalidRequest
from gpucloud.core.volumes import VolumeMount, parse_mount, parse_mounts, volume_env_name


def test_a_mount_names_a_volume_and_an_absolute_path() -> None:
    assert parse_mount("data:/mnt/data") == VolumeMount("data", "/mnt/data")
    assert parse_mount("data:/mnt/data/:ro") == VolumeMount("data", "/mnt/data", read_only=True)
    assert str(parse_mount("data:/mnt//data:ro")) == "data:/mnt/data:ro"


@pytest.mark.parametrize("text", [
    "data", "data:relative", "Data:/x", "9lives:/x", "data:/a/../b", "data:/", "data:/etc/x",
    "data:/x:rx", "a:b:c:d",
])
def test_bad_mounts_are_refused_with_what_to_fix(text: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_mount(text)
    assert text in str(err.value) or "volume name" in str(err.value)


def test_a_volume_or_a_path_is_mounted_once() -> None:
    with pytest.raises(InvalidRequest, match="repeated: data"):
        parse_mounts(["data:/a", "data:/b"])
    with pytest.raises(InvalidRequest, match="repeated: /a"):
        parse_mounts(["one:/a", "two:/a"])


def test_the_environment_variable_is_upper_case_and_shell_safe() -> None:
    assert volume_env_name("my-data") == "GPUCLOUD_VOLUME_MY_DATA"
