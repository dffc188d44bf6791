from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from gpucloud.core.cluster import ClusterSnapshot, DeviceView, NodeView, Request, Workload
from gpucloud.core.placement import never_fits, place, queue_order
from gpucloud.core.states import Reason


def node(
    node_id: str,
    gpus: int,
    model: str = "H100",
    cpu: int = 64000,
    mem: int = 512000,
    allocated: int = 0,
    healthy: bool = True,
) -> NodeView:
    devices = tuple(
        DeviceView(f"{node_id}/gpu{i}", i, model, True, i < allocated) for i in range(gpus)
    )
    return NodeView(node_id, healthy, cpu, mem, devices=devices)


def job(
    job_id: str, gpus: int = 0, model: str | None = None, cpu: int = 1000, priority: int = 0
) -> Workload:
    models = frozenset({model}) if model else None
    return Workload(job_id, "t", Request(gpus, models, cpu, 1024), priority, job_id)


def test_two_half_node_jobs_share_a_node_on_disjoint_devices_and_a_third_waits() -> None:
    cluster = ClusterSnapshot((node("n0", 8),))
    plan = place(cluster, [job("j1", 4), job("j2", 4), job("j3", 4)])
    assert [p.workload_id for p in plan.placements] == ["j1", "j2"]
    first, second = (set(p.device_ids) for p in plan.placements)
    assert not first & second and len(first | second) == 8
    assert len(plan.pending) == 1
    waiting = plan.pending[0]
    assert waiting.workload_id == "j3" and waiting.reason is Reason.WAITING_FOR_RESOURCES
    assert waiting.message == "0/1 nodes fit: 1 too few free GPUs"


def test_reasons_are_aggregated_per_filter() -> None:
    cluster = ClusterSnapshot(
        (node("a", 8, "A100-80G"), node("b", 8, allocated=8), node("c", 8, healthy=False))
    )
    plan = place(cluster, [job("j", 2, "H100")])
    assert plan.pending[0].message.startswith("0/3 nodes fit: ")
    assert {"1 wrong GPU model", "1 too few free GPUs", "1 unhealthy"} == set(
        plan.pending[0].message.removeprefix("0/3 nodes fit: ").split(", ")
    )


def test_strict_fifo_within_priority_blocks_later_jobs() -> None:
    cluster = ClusterSnapshot((node("n0", 8, allocated=6),))
    plan = place(cluster, [job("big", 4), job("small", 1)])
    assert plan.placements == ()
    assert plan.pending[1].workload_id == "small"
    assert plan.pending[1].reason is Reason.WAITING_IN_QUEUE
    assert "big" in plan.pending[1].message


def test_higher_priority_goes_first() -> None:
    ordered = queue_order([job("a"), job("b", priority=5), job("c")])
    assert [w.id for w in ordered] == ["b", "a", "c"]


def test_best_fit_prefers_the_fuller_node() -> None:
    cluster = ClusterSnapshot((node("empty", 8), node("half", 8, allocated=4)))
    plan = place(cluster, [job("j", 2)])
    assert plan.placements[0].node_id == "half"


def test_cpu_is_a_resource_too() -> None:
    cluster = ClusterSnapshot((node("n0", 0, cpu=2000),))
    plan = place(cluster, [job("a", cpu=1500), job("b", cpu=1000)])
    assert [p.workload_id for p in plan.placements] == ["a"]
    assert plan.pending[0].message == "0/1 nodes fit: 1 too few CPUs"


def test_never_fits_names_the_limit() -> None:
    cluster = ClusterSnapshot((node("n0", 8),))
    assert never_fits(cluster, Request(9)) == "n0 has 8 matching GPUs"
    assert never_fits(cluster, Request(2, frozenset({"A100-80G"}))) == "n0 has 0 matching GPUs"
    assert never_fits(cluster, Request(8)) is None
    assert never_fits(cluster, Request(0, None, 128000)) == "n0 has 64 CPUs"


@settings(max_examples=200, deadline=None)
@given(
    nodes=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=6),
    jobs=st.lists(st.tuples(st.integers(0, 8), st.integers(1, 8), st.integers(-1, 1)), max_size=25),
)
def test_plans_never_double_book_or_overcommit(
    nodes: list[tuple[int, int]], jobs: list[tuple[int, int, int]]
) -> None:
    cluster = ClusterSnapshot(
        tuple(
            node(f"n{i}", gpus, cpu=8000, allocated=min(taken, gpus))
            for i, (gpus, taken) in enumerate(nodes)
        )
    )
    queue = [job(f"j{i:02d}", g, cpu=c * 1000, priority=p) for i, (g, c, p) in enumerate(jobs)]
    plan = place(cluster, queue)
    devices = [d for p in plan.placements for d in p.device_ids]
    assert len(devices) == len(set(devices)), "a device was booked twice"
    preallocated = {d.id for n in cluster.nodes for d in n.devices if d.allocated}
    assert not preallocated & set(devices)
    cpu = Counter[str]()
    for p in plan.placements:
        cpu[p.node_id] += p.cpu_milli
    assert all(cpu[n.id] <= n.cpu_milli for n in cluster.nodes)
    assert {p.workload_id for p in plan.placements} | {p.workload_id for p in plan.pending} == {
        w.id for w in queue
    }
    # Strict FIFO: what was placed is a prefix of the queue order.
    order = [w.id for w in queue_order(queue)]
    placed = [p.workload_id for p in plan.placements]
    assert placed == order[: len(placed)]
