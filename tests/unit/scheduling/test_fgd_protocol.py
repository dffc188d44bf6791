"""The FGD protocol on tiny lists whose answers are known by hand, and trace parsing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from gpucloud.scheduling.fgd_sim import run, tuned_arrivals
from gpucloud.scheduling.model import MILLI, Workload
from gpucloud.scheduling.registry import POLICIES
from gpucloud.scheduling.traces import TraceError, parse_nodes, parse_pods

NODES = """sn,cpu_milli,memory_mib,gpu,model
n1,8000,65536,2,T4
n0,8000,65536,2,T4
c0,32000,65536,0,
"""


def halves(n: int) -> list[Workload]:
    return [Workload(f"p{i:02d}", 1000, 1024, 1, 500) for i in range(n)]


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_halves_fill_the_cluster_exactly(policy: str) -> None:
    # 4 GPUs (4000 milli), pods of half a GPU: tuning to 130% (5200) makes 10 pods; every
    # policy packs two halves per device, so 100% arrival means 100% allocated.
    result = run(parse_nodes(NODES.splitlines()), halves(8), POLICIES[policy], seed=7)
    assert result.alloc_pct_at_100 == pytest.approx(100.0)
    assert len(result.curve) == 101
    assert result.curve[50] == pytest.approx(50.0)
    assert result.placed == 8 and result.failed == 2


def test_fgd_beats_random_where_fragmentation_matters() -> None:
    # 0.7 + 0.3 shares: a policy that pairs them fills devices; one that stacks 0.3s strands
    # 0.1 per device. FGD knows the request mix, so it never does worse than random.
    pods = [Workload(f"a{i}", 1000, 0, 1, 700) for i in range(4)] + \
           [Workload(f"b{i}", 1000, 0, 1, 300) for i in range(4)]
    nodes = parse_nodes(NODES.splitlines())
    fgd = np.mean([run(nodes, pods, POLICIES["fgd"], s).alloc_pct_at_100 for s in range(5)])
    rnd = np.mean([run(nodes, pods, POLICIES["random"], s).alloc_pct_at_100 for s in range(5)])
    assert fgd >= rnd


def test_tuning_adds_copies_up_to_the_target_and_removes_down_to_it() -> None:
    up = tuned_arrivals(halves(2), 4 * MILLI, 1.3, random.Random(1))
    assert sum(w.total_gpu_milli for w in up) == 5000  # 5200 target, 500 steps
    assert len({w.id for w in up}) == len(up)
    down = tuned_arrivals(halves(30), 4 * MILLI, 1.3, random.Random(1))
    assert sum(w.total_gpu_milli for w in down) == 5000


def test_parse_full_and_short_pod_formats() -> None:
    header = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
              "creation_time,deletion_time,scheduled_time\n")
    full = parse_pods((header + """p0,12000,16384,1,460,V100M16|V100M32,LS,Running,0,10,0
p1,4000,8192,0,0,,BE,Running,1,,1
p2,8000,8192,8,1000,,LS,Running,1,,1
""").splitlines())
    assert full[0].gpu_models == frozenset({"V100M16", "V100M32"}) and full[0].gpu_milli == 460
    assert full[1].gpu_count == 0 and full[1].gpu_models is None
    assert full[2].total_gpu_milli == 8000
    short = parse_pods("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1000,10,2,1000\n"
                       .splitlines())
    assert short[0].gpu_count == 2


def test_parse_errors_name_the_line() -> None:
    with pytest.raises(TraceError, match="missing column"):
        parse_pods(["name,cpu_milli\n", "p,1\n"])
    with pytest.raises(TraceError, match="line 2"):
        parse_pods("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,x,1,0,0\n".splitlines())
