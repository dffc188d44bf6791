"""The image catalogue, a build's states and when a job may launch (pure), and what the build
files on a node mean."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from gpucloud.core.errors import EngineError, IllegalTransition, InvalidRequest
from gpucloud.core.images import (
    BUILD_TRANSITIONS,
    PRESETS,
    Accelerator,
    BuildState,
    Recipe,
    check_build_transition,
    image_environment,
    launch_gate,
    merge_catalogue,
    parse_presets,
)
from gpucloud.core.instances import parse_instance_spec
from gpucloud.core.jobspec import parse_job_spec
from gpucloud.engines import images as host
from gpucloud.engines.discovery import local_nodes
from gpucloud.engines.local import LocalEngine


def test_the_catalogue_has_the_issue_presets_with_versions() -> None:
    by_name = {p.name: p for p in PRESETS}
    assert {"pytorch", "tensorflow", "jax", "cuda-base", "ascend-cann"} <= set(by_name)
    for preset in PRESETS:
        assert preset.accelerator_version, preset.name
        if preset.name != "cuda-base":
            assert preset.framework and preset.framework_version and preset.requirements
            assert all("==" in r for r in preset.requirements), "pins only: builds repeat"
    assert by_name["cuda-base"].requirements == ()  # the tiny one: no download at all
    assert by_name["ascend-cann"].accelerator is Accelerator.CANN


def test_operator_entries_are_validated_and_may_replace_a_builtin() -> None:
    extra = parse_presets([{"name": "pytorch", "framework": "torch", "framework_version": "2.6",
                            "accelerator_version": "12.6", "requirements": ["torch==2.6.0"]},
                           {"name": "mine"}])
    merged = merge_catalogue(extra)
    assert merged["pytorch"].requirements == ("torch==2.6.0",)
    assert merged["mine"].accelerator is Accelerator.CUDA and "jax" in merged
    with pytest.raises(InvalidRequest, match="entry 1"):
        parse_presets([{"title": "no name"}])
    with pytest.raises(InvalidRequest, match="image name"):
        parse_presets([{"name": "Bad Name"}])
    with pytest.raises(InvalidRequest, match="list"):
        parse_presets({"name": "x"})


def test_a_build_moves_only_along_its_table() -> None:
    check_build_transition("b", BuildState.ABSENT, BuildState.BUILDING)
    check_build_transition("b", BuildState.BUILDING, BuildState.READY)
    with pytest.raises(IllegalTransition):
        check_build_transition("b", BuildState.ABSENT, BuildState.READY)  # never unbuilt
    with pytest.raises(IllegalTransition):
        check_build_transition("b", BuildState.FAILED, BuildState.READY)
    assert all(BuildState.ABSENT not in targets for targets in BUILD_TRANSITIONS.values())


def test_a_recipe_change_is_a_new_venv() -> None:
    base = Recipe("pytorch", "pytorch", ("torch==2.5.1",))
    assert base.key.startswith("pytorch-")
    assert Recipe("pytorch", "pytorch", ("torch==2.5.1",)).key == base.key
    assert Recipe("pytorch", "pytorch", ("torch==2.6.0",)).key != base.key
    assert Recipe("mine", "img_1", ("torch==2.5.1",), "/layer").key != base.key


def test_a_job_launches_only_when_its_image_is_ready_on_every_node() -> None:
    ready = (BuildState.READY, "")
    assert launch_gate("pytorch", {"n1": ready, "n2": ready}).launch
    waiting = launch_gate("pytorch", {"n1": ready, "n2": (BuildState.BUILDING, "building")})
    assert (waiting.launch, waiting.fail) == (False, False)
    assert waiting.message == "preparing image pytorch on node n2"
    absent = launch_gate("pytorch", {"n1": (BuildState.ABSENT, "")})
    assert not absent.launch and not absent.fail
    failed = launch_gate("pytorch", {"n1": (BuildState.BUILDING, ""),
                                     "n2": (BuildState.FAILED, "pip exited with 1")})
    assert failed.fail and not failed.launch  # never a silent fallback to another env
    assert failed.message == "image pytorch failed to build on node n2: pip exited with 1"


def test_the_job_env_puts_the_venv_first() -> None:
    env = image_environment("/v/venv", "pytorch", "/usr/bin:/bin")
    assert env == {"VIRTUAL_ENV": "/v/venv", "PATH": "/v/venv/bin:/usr/bin:/bin",
                   "GPUCLOUD_IMAGE": "pytorch"}


def test_jobs_and_instances_name_their_image_by_the_name_rules() -> None:
    assert parse_job_spec({"command": ["x"], "image": "pytorch"}).image == "pytorch"
    with pytest.raises(InvalidRequest, match="image"):
        parse_job_spec({"command": ["x"], "image": "../etc"})
    spec = parse_instance_spec({"gpus": 1, "image": "cuda-base"})
    run = spec.job_spec(["true"], {"HOME": "/h"}, no_gpu=False)
    assert run.image == "cuda-base" and run.env["PIP_USER"] == "1"  # pip goes to its disk
    assert "PIP_USER" not in parse_instance_spec({"gpus": 1}).job_spec(
        ["true"], {}, no_gpu=False).env


def test_the_build_files_say_the_state(tmp_path: Path) -> None:
    engine = LocalEngine(tmp_path, local_nodes("1xH100")[0])
    node = engine.nodes()[0].id
    where = host.build_dir(engine, node, "k-1")
    assert host.build_status(engine, node, "k-1").state is BuildState.ABSENT
    where.mkdir(parents=True)
    (where / "recipe.json").write_text("{}")
    assert host.build_status(engine, node, "k-1").message == "the builder is not running"
    fd = os.open(where / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a builder holds it
    assert host.build_status(engine, node, "k-1").state is BuildState.BUILDING
    os.close(fd)
    (where / "failed").write_text("pip exited with 1: no such file")
    failed = host.build_status(engine, node, "k-1")
    assert (failed.state, failed.message) == (BuildState.FAILED, "pip exited with 1: no such "
                                                                 "file")
    (where / "failed").unlink()
    (where / "ready").write_text("3.11\n")
    assert host.build_status(engine, node, "k-1").message == "its venv is missing"
    (where / "venv" / "bin").mkdir(parents=True)
    (where / "venv" / "bin" / "python").touch()
    assert host.build_status(engine, node, "k-1").state is BuildState.READY
    with pytest.raises(EngineError, match="invalid path component"):
        host.build_dir(engine, "../x", "k-1")


def test_a_broken_operator_catalogue_is_an_error_naming_the_file(tmp_path: Path) -> None:
    engine = LocalEngine(tmp_path, local_nodes("1xH100")[0])
    assert host.operator_presets(engine) == ()  # no file: the built-ins only
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "catalogue.json").write_text('[{"name": "ok"}, {"title": 1}]')
    with pytest.raises(host.CatalogueUnreadable, match=r"catalogue\.json is broken.*entry 2"):
        host.operator_presets(engine)
    (tmp_path / "images" / "catalogue.json").write_text("[{")
    with pytest.raises(host.CatalogueUnreadable, match="broken"):
        host.operator_presets(engine)
