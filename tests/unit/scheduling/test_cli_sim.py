"""'gpucloud sim fgd' on tiny hand-made lists whose allocation is known exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpucloud.cli import main
from gpucloud.scheduling.fgd_sim import parse_seeds

# 2 T4 + 2 V100 (4000 milli of GPU) and a CPU-only node.
NODES = """sn,cpu_milli,memory_mib,gpu,model
t4-node,8000,65536,2,T4
v100-node,8000,65536,2,V100
cpu-node,32000,65536,0,
"""
FULL_HEADER = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
               "creation_time,deletion_time,scheduled_time\n")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def nodes(tmp_path: Path) -> Path:
    return write(tmp_path, "nodes.csv", NODES)


def sim(*args: str | Path) -> int:
    return main.run(["sim", "fgd", *map(str, args)])


def test_full_format_honours_gpu_model_constraints(
    nodes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Whole-GPU pods that may only use a T4: tuning to 130% of 4000 milli makes 5 pods; when
    # 4 have arrived (100%), only the 2 T4s can be held: exactly 50% allocated, every seed.
    pods = write(tmp_path, "pods.csv", FULL_HEADER + "p0,2000,1024,1,1000,T4,LS,Running,0,,0\n")
    assert sim("--nodes", nodes, "--pods", pods, "--seeds", "1,2,5", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "fragaware" and out["seeds"] == [1, 2, 5]
    assert out["alloc_pct_at_100"] == pytest.approx(50.0)
    assert out["per_seed"] == {"1": pytest.approx(50.0), "2": pytest.approx(50.0),
                               "5": pytest.approx(50.0)}
    assert out["placed"] == {"1": 2, "2": 2, "5": 2} and out["failed"] == {"1": 3, "2": 3, "5": 3}
    curve = out["curve"]
    assert len(curve) == 101
    assert curve[25] == pytest.approx(25.0) and curve[50] == pytest.approx(50.0)
    assert curve[100] == pytest.approx(50.0)


def test_short_multigpu_format_is_limited_by_cpu(
    nodes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The short format has no gpu_spec: any model will do, but 6 of a node's 8 CPUs per pod
    # leave room for one pod per GPU node, so 2 of 4 GPUs are held at 100% arrival.
    pods = write(tmp_path, "multigpu.csv",
                 "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,6000,1024,1,1000\n")
    assert sim("--nodes", nodes, "--pods", pods, "--policy", "fgd", "--seeds", "42-43") == 0
    out = capsys.readouterr().out
    assert out.startswith("fgd: 50.00% of GPU allocated at 100% arrival (mean of 2 seeds; "
                          "1 pods on 3 nodes, 4 GPUs, tune 1.3)")
    assert "seed 42: 50.00%  (2 placed, 3 failed)" in out
    assert "seed 43: 50.00%  (2 placed, 3 failed)" in out


def test_multi_gpu_pods_fill_the_cluster(
    nodes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two-GPU pods fit each GPU node exactly: the cluster is full when 100% has arrived.
    pods = write(tmp_path, "multigpu.csv",
                 "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,1024,2,1000\n")
    assert sim("--nodes", nodes, "--pods", pods, "--seeds", "7", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["alloc_pct_at_100"] == pytest.approx(100.0)
    assert out["placed"] == {"7": 2} and out["failed"] == {"7": 0}


@pytest.mark.parametrize(("pods_text", "message"), [
    ("name,cpu_milli,memory_mib\np0,1,1\n", "missing column(s) num_gpu, gpu_milli"),
    ("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,x,1,1,1000\n",
     "line 2: cpu_milli='x' is not a number"),
    ("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n", "no pods in the file"),
    ("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,1,0,0\n",
     "cannot simulate: the pod list requests no GPUs"),
])
def test_a_bad_pod_file_is_one_error_line(
    nodes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], pods_text: str,
    message: str
) -> None:
    pods = write(tmp_path, "bad.csv", pods_text)
    assert sim("--nodes", nodes, "--pods", pods, "--seeds", "1") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert message in captured.err


def test_missing_or_gpu_less_node_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = write(tmp_path, "pods.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,1,500\n")
    assert sim("--nodes", tmp_path / "absent.csv", "--pods", pods) == 2
    assert capsys.readouterr().err == f"error: --nodes {tmp_path / 'absent.csv'}: no such file\n"
    cpu_only = write(tmp_path, "cpu.csv", "sn,cpu_milli,memory_mib,gpu,model\nc,1000,1024,0,\n")
    assert sim("--nodes", cpu_only, "--pods", pods, "--seeds", "1") == 2
    assert capsys.readouterr().err == "error: cannot simulate: the node list has no GPUs\n"


@pytest.mark.parametrize(("args", "message"), [
    (("--seeds", "42-"), "--seeds: '42-' is not a seed range like 42-51 or a list like 1,2,5"),
    (("--seeds", "51-42"), "--seeds: seed range '51-42' is empty"),
    (("--seeds", "1,1"), "repeats a seed"),
    (("--policy", "magic"), "--policy 'magic': choose one of random,"),
    (("--tune", "0"), "--tune must be positive"),
])
def test_bad_flags_exit_2_before_simulating(
    nodes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
    message: str
) -> None:
    pods = write(tmp_path, "pods.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,1,500\n")
    assert sim("--nodes", nodes, "--pods", pods, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_parse_seeds() -> None:
    assert parse_seeds("42-51") == list(range(42, 52))
    assert parse_seeds("1,2,5") == [1, 2, 5]
    assert parse_seeds("7") == [7]
    for bad in ("", "a", "1-2-3", "1,,2", "-3"):
        with pytest.raises(ValueError):
            parse_seeds(bad)
