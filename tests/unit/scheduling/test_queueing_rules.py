"""Hand-built clusters, one queueing rule each: gangs, topology, fair share, preemption,
quotas, backfill, fractional packing."""

from __future__ import annotations

import gc
from collections import defaultdict
from dataclasses import replace

import pytest

from gpucloud.scheduling.decisions import PreemptReason, Running, SchedulePlan, WaitReason
from gpucloud.scheduling.gang import Domains, place_gang
from gpucloud.scheduling.model import MILLI, ClusterSnapshot
from gpucloud.scheduling.policies import BestFitScorer
from gpucloud.scheduling.scheduler import SchedulerConfig, schedule
from gpucloud.scheduling.state import ClusterState
from tests.unit.scheduling.cluster import gang, job, node, running_on

FIT = BestFitScorer()


def placed(plan: SchedulePlan) -> dict[str, str]:
    return {p.workload_id: p.node for p in plan.placements}


def waits(plan: SchedulePlan) -> dict[str, WaitReason]:
    return {w.workload_id: w.reason for w in plan.waiting}


# --- gangs ---------------------------------------------------------------------------------

def test_a_gang_is_never_partial() -> None:
    nodes = [node("a"), node("b")]
    snap, running = running_on(nodes, [(job("ra", 4), "a", None), (job("rb", 4), "b", None)])
    plan = schedule(snap, [*gang("g", 3, 4), job("small", 4)], FIT, running=running)
    assert placed(plan) == {"small": "a"}
    assert waits(plan) == {f"g-{k}": WaitReason.GANG_NO_DOMAIN for k in range(3)}
    assert "fits in no single node, NVLink island or leaf switch" in plan.waiting[0].message


def test_a_gang_that_fails_halfway_leaves_nothing_claimed() -> None:
    # 4 + 2 + 2 free GPUs: the first 4-GPU member fits on a, the second fits nowhere.
    nodes = [node("a"), node("b"), node("c")]
    snap, _ = running_on(nodes, [(job("ra", 4), "a", None), (job("rb", 6), "b", None),
                                 (job("rc", 6), "c", None)])
    state = ClusterState.from_snapshot(snap)
    before = state.gpu_free.copy()
    got = place_gang(state, FIT, gang("g", 2, 4), Domains.build(snap.nodes), "cluster")
    assert got is None
    assert (state.gpu_free == before).all()


def test_an_incomplete_gang_waits() -> None:
    plan = schedule(ClusterSnapshot((node("a"),)), gang("g", 3, 1)[:2], FIT)
    assert plan.placements == ()
    assert waits(plan) == {"g-0": WaitReason.GANG_INCOMPLETE, "g-1": WaitReason.GANG_INCOMPLETE}
    assert plan.waiting[0].message == "gang g: 2 of 3 members queued"


def topo_cluster() -> ClusterSnapshot:
    # leaf L1: islands i1 = {n1, n2}, i2 = {n3, n4}; leaf L2: n5 alone.
    return ClusterSnapshot((node("n1", island="i1", leaf="L1"), node("n2", island="i1", leaf="L1"),
                            node("n3", island="i2", leaf="L1"), node("n4", island="i2", leaf="L1"),
                            node("n5", leaf="L2")))


@pytest.mark.parametrize(("members", "gpus", "level", "nodes_in"), [
    (2, 4, "node", {"n1"}),
    (2, 8, "nvlink_island", {"n1", "n2"}),
    (3, 8, "leaf_switch", {"n1", "n2", "n3", "n4"}),
])
def test_gangs_take_the_tightest_topology_domain(members: int, gpus: int, level: str,
                                                 nodes_in: set[str]) -> None:
    plan = schedule(topo_cluster(), gang("g", members, gpus), FIT)
    assert len(plan.placements) == members
    assert plan.gang_levels == {"g": level}
    got = set(placed(plan).values())
    assert got <= nodes_in
    if level == "node":
        assert len(got) == 1


def test_a_gang_spans_leaf_switches_only_when_allowed() -> None:
    big = gang("g", 5, 8)
    assert waits(schedule(topo_cluster(), big, FIT)) == {
        w.id: WaitReason.GANG_NO_DOMAIN for w in big}
    plan = schedule(topo_cluster(), big, FIT, SchedulerConfig(gang_max_level="cluster"))
    assert len(plan.placements) == 5 and plan.gang_levels == {"g": "cluster"}
    strict = gang("h", 3, 8, require="nvlink_island")
    plan = schedule(topo_cluster(), strict, FIT, SchedulerConfig(gang_max_level="cluster"))
    assert plan.placements == ()
    assert "fits in no single node or NVLink island" in plan.waiting[0].message


def test_a_one_per_node_gang_never_shares_a_node() -> None:
    spread = [replace(w, one_per_node=True) for w in gang("g", 2, 4)]
    plan = schedule(topo_cluster(), spread, FIT)
    assert len(set(placed(plan).values())) == 2  # 2 x 4 GPUs would fit on one node
    assert plan.gang_levels == {"g": "nvlink_island"}
    one_node = schedule(ClusterSnapshot((node("a"),)), spread, FIT)
    assert one_node.placements == ()
    assert waits(one_node) == {w.id: WaitReason.GANG_NO_DOMAIN for w in spread}
    # one node too few healthy nodes in every island: the gang goes to the leaf switch
    three = [replace(w, one_per_node=True) for w in gang("h", 3, 1)]
    plan = schedule(topo_cluster(), three, FIT)
    assert len(set(placed(plan).values())) == 3 and plan.gang_levels == {"h": "leaf_switch"}


def test_the_fullest_domain_that_fits_goes_first() -> None:
    nodes = [node("a"), node("b"), node("c")]
    snap, running = running_on(nodes, [(job("rb", 2), "b", None), (job("rc", 5), "c", None)])
    plan = schedule(snap, gang("g", 2, 3), FIT, running=running)
    assert set(placed(plan).values()) == {"b"}  # 6 free: fits, and tighter than a's 8


# --- priority and fair share ---------------------------------------------------------------

def test_drf_serves_the_tenant_with_the_smaller_dominant_share_first() -> None:
    nodes = [node("a")]
    snap, running = running_on(nodes, [(job(f"ra{i}", 1, tenant="a"), "a", None)
                                       for i in range(4)])
    queue = [job(f"a{i}", 1, tenant="a") for i in range(3)]
    queue += [job(f"b{i}", 1, tenant="b") for i in range(3)]
    plan = schedule(snap, queue, FIT, running=running)
    assert [p.workload_id for p in plan.placements] == ["b0", "b1", "b2", "a0"]
    assert waits(plan) == {"a1": WaitReason.NO_FIT, "a2": WaitReason.NO_FIT}


def test_drf_interleaves_tenants_and_honours_weights() -> None:
    snap = ClusterSnapshot((node("a", gpus=4),))
    queue = [job(f"a{i}", 1, tenant="a") for i in range(4)]
    queue += [job(f"b{i}", 1, tenant="b") for i in range(4)]
    plan = schedule(snap, queue, FIT)
    assert [p.workload_id for p in plan.placements] == ["a0", "b0", "a1", "b1"]
    weighted = schedule(snap, queue, FIT, SchedulerConfig(tenant_weights={"a": 3.0}))
    assert [p.workload_id for p in weighted.placements] == ["a0", "b0", "a1", "a2"]


def test_a_higher_priority_class_goes_before_fair_share() -> None:
    nodes = [node("a", gpus=2)]
    snap, running = running_on(nodes, [(job("ra", 1, tenant="a", priority=9), "a", None)])
    queue = [job("b-low", 1, tenant="b"), job("a-high", 1, tenant="a", priority=5)]
    plan = schedule(snap, queue, FIT, SchedulerConfig(preemption=False), running=running)
    assert placed(plan) == {"a-high": "a"}
    assert waits(plan) == {"b-low": WaitReason.NO_FIT}


# --- preemption ----------------------------------------------------------------------------

def test_preemption_takes_the_least_loss_victim() -> None:
    nodes = [node("a", gpus=4)]
    ages = {"v1": 300.0, "v2": 10.0, "v3": 50.0, "v4": 20.0}
    snap, running = running_on(nodes, [(job(v, 1, ckpt=s), "a", None) for v, s in ages.items()])
    one = schedule(snap, [job("hi", 1, priority=5)], FIT, running=running)
    assert [(p.workload_id, p.reason, p.lost_s) for p in one.preemptions] == [
        ("v2", PreemptReason.PRIORITY, 10.0)]
    assert placed(one) == {"hi": "a"}
    two = schedule(snap, [job("hi", 2, priority=5)], FIT, running=running)
    assert {p.workload_id for p in two.preemptions} == {"v2", "v4"}


def test_preemption_picks_the_node_with_the_least_total_loss() -> None:
    nodes = [node("a", gpus=2), node("b", gpus=2)]
    snap, running = running_on(nodes, [
        (job("big", 2, ckpt=30), "a", None),
        (job("s1", 1, ckpt=10), "b", None), (job("s2", 1, ckpt=10), "b", None)])
    plan = schedule(snap, [job("hi", 2, priority=1)], FIT, running=running)
    assert {p.workload_id for p in plan.preemptions} == {"s1", "s2"}
    assert placed(plan) == {"hi": "b"}


def test_victims_that_turn_out_unneeded_are_spared() -> None:
    # Device 0 holds two halves (losses 1 and 100), device 1 a whole job (loss 50). Taking the
    # cheapest half first does not free a device; the whole job alone does, so only it goes.
    nodes = [node("a", gpus=2)]
    snap, running = running_on(nodes, [
        (job("h1", 1, milli=500, ckpt=1), "a", None),
        (job("h2", 1, milli=500, ckpt=100), "a", None),
        (job("w", 1, ckpt=50), "a", None)])
    assert [r.placement.devices for r in running] == [(0,), (0,), (1,)]
    plan = schedule(snap, [job("hi", 1, priority=1)], FIT, running=running)
    assert [p.workload_id for p in plan.preemptions] == ["w"]


def test_never_preempts_equal_or_higher_priority() -> None:
    nodes = [node("a", gpus=1)]
    snap, running = running_on(nodes, [(job("r", 1, priority=5, ckpt=1), "a", None)])
    for priority in (3, 5):
        plan = schedule(snap, [job("new", 1, priority=priority)], FIT, running=running)
        assert plan.preemptions == () and waits(plan) == {"new": WaitReason.NO_FIT}


def test_a_running_gang_is_preempted_whole() -> None:
    nodes = [node("a", gpus=2), node("b", gpus=1)]
    members = gang("g", 2, 1, ckpt=5.0)
    snap, running = running_on(nodes, [(members[0], "a", None), (members[1], "b", None),
                                       (job("s", 1, ckpt=20), "a", None)])
    plan = schedule(snap, [job("hi", 1, priority=1)], FIT, running=running)
    assert {p.workload_id for p in plan.preemptions} == {"g-0", "g-1"}  # 10 s lost < 20 s
    assert placed(plan) == {"hi": "a"}


# --- quotas --------------------------------------------------------------------------------

def test_idle_quota_can_be_borrowed_up_to_the_total_quota() -> None:
    snap = ClusterSnapshot((node("a"),))
    queue = [job(f"a{i}", 1, tenant="a") for i in range(5)]
    lend = schedule(snap, queue, FIT, SchedulerConfig(quotas={"a": 2000, "b": 2000}))
    assert len(lend.placements) == 4  # 2 own + 2 of b's idle quota, though 8 GPUs are free
    assert waits(lend) == {"a4": WaitReason.OVER_QUOTA}
    assert "uses 4000 of its 2000 milli-GPU quota" in lend.waiting[0].message
    strict = schedule(snap, queue, FIT, SchedulerConfig(quotas={"a": 2000, "b": 2000},
                                                        borrowing=False))
    assert len(strict.placements) == 2


def test_borrowed_quota_is_reclaimed_by_preemption() -> None:
    nodes = [node("a")]
    ages = [40.0, 5.0, 70.0, 1.0, 90.0, 60.0, 80.0, 30.0]
    snap, running = running_on(nodes, [(job(f"a{i}", 1, tenant="a", ckpt=s, priority=3), "a",
                                        None) for i, s in enumerate(ages)])
    cfg = SchedulerConfig(quotas={"a": 4000, "b": 4000})
    plan = schedule(snap, [job("b0", 2, tenant="b", priority=3)], FIT, cfg, running)
    assert placed(plan) == {"b0": "a"}
    assert {(p.workload_id, p.reason) for p in plan.preemptions} == {
        ("a1", PreemptReason.QUOTA_RECLAIM), ("a3", PreemptReason.QUOTA_RECLAIM)}


def test_reclaim_stops_at_the_borrowers_quota() -> None:
    nodes = [node("a")]
    snap, running = running_on(nodes, [(job(f"a{i}", 1, tenant="a", ckpt=float(i)), "a", None)
                                       for i in range(6)] +
                               [(job(f"b{i}", 1, tenant="b"), "a", None) for i in range(2)])
    # a borrows 2 GPUs; b, within its quota, asks for 4: only a's 2 borrowed can be taken back.
    cfg = SchedulerConfig(quotas={"a": 4000, "b": 6000})
    plan = schedule(snap, [job("b-new", 4, tenant="b")], FIT, cfg, running)
    assert plan.preemptions == () and waits(plan) == {"b-new": WaitReason.NO_FIT}
    plan = schedule(snap, [job("b-new", 2, tenant="b")], FIT, cfg, running)
    assert {p.workload_id for p in plan.preemptions} == {"a0", "a1"}


def test_guaranteed_quota_is_safe_from_other_tenants_priority() -> None:
    nodes = [node("a")]
    # a's own running jobs share its priority: only b's (lower, within b's quota) could go.
    snap, running = running_on(nodes, [(job(f"a{i}", 1, tenant="a", priority=9), "a", None)
                                       for i in range(4)] +
                               [(job(f"b{i}", 1, tenant="b"), "a", None) for i in range(4)])
    urgent = [job("a-urgent", 1, tenant="a", priority=9)]
    quota = schedule(snap, urgent, FIT, SchedulerConfig(quotas={"a": 6000, "b": 4000}),
                     running)
    assert quota.preemptions == () and waits(quota) == {"a-urgent": WaitReason.NO_FIT}
    free_for_all = schedule(snap, urgent, FIT, running=running)  # no quotas: priority wins
    assert [(p.workload_id[0], p.reason) for p in free_for_all.preemptions] == [
        ("b", PreemptReason.PRIORITY)]


# --- backfill ------------------------------------------------------------------------------

def backfill_cluster() -> tuple[ClusterSnapshot, list[Running]]:
    nodes = [node("g2", gpus=8), node("t4", gpus=4, model="T4")]
    return running_on(nodes, [(job("r", 4, ckpt=0.0), "g2", 100.0)])


def test_backfill_never_delays_the_reservation() -> None:
    snap, running = backfill_cluster()
    g2 = frozenset({"G2"})
    queue = [job("big", 8, models=g2), job("long", 4, limit=500.0, models=g2),
             job("forever", 2, models=g2), job("short", 4, limit=50.0, models=g2),
             job("t4-long", 4, limit=500.0)]
    plan = schedule(snap, queue, FIT, running=running)
    assert plan.reservation is not None
    assert plan.reservation.workload_ids == ("big",) and plan.reservation.start_in_s == 100.0
    assert placed(plan) == {"short": "g2", "t4-long": "t4"}  # ends in time / room big never uses
    assert waits(plan) == {"big": WaitReason.NO_FIT, "long": WaitReason.RESERVED,
                           "forever": WaitReason.RESERVED}
    assert plan.waiting[0].message.endswith("reserved to start in 100 s")
    # Without backfill's guard the long job would take the room and push big back.
    greedy = schedule(snap, queue, FIT, SchedulerConfig(backfill=False), running)
    assert "long" in placed(greedy) and greedy.reservation is None


def test_no_reservation_when_the_blockers_have_no_end() -> None:
    nodes = [node("g2", gpus=8)]
    snap, running = running_on(nodes, [(job("r", 4), "g2", None)])
    plan = schedule(snap, [job("big", 8), job("long", 4, limit=500.0)], FIT, running=running)
    assert plan.reservation is None and placed(plan) == {"long": "g2"}


def test_preemption_never_delays_the_reservation() -> None:
    # big cannot start even by evicting `low` (r, priority 5, holds the other half) and
    # reserves all 8 GPUs at t=100. mid may evict `low` only if it is gone by then.
    nodes = [node("g2", gpus=8)]
    snap, running = running_on(nodes, [(job("r", 4, priority=5), "g2", 100.0),
                                       (job("low", 4, ckpt=1.0), "g2", 100.0)])
    for limit, expect in ((500.0, WaitReason.RESERVED), (50.0, None)):
        queue = [job("big", 8, priority=2), job("mid", 4, priority=1, limit=limit)]
        plan = schedule(snap, queue, FIT, running=running)
        assert plan.reservation is not None and plan.reservation.start_in_s == 100.0
        if expect is None:
            assert placed(plan) == {"mid": "g2"}
            assert [p.workload_id for p in plan.preemptions] == ["low"]
        else:
            assert plan.preemptions == () and waits(plan)["mid"] is expect


# --- fractional packing --------------------------------------------------------------------

def test_fractions_pack_onto_shared_devices() -> None:
    snap = ClusterSnapshot((node("a", gpus=2),))
    queue = [job("f1", 1, milli=500), job("f2", 1, milli=250), job("whole", 1),
             job("f3", 1, milli=250), job("f4", 1, milli=100)]
    plan = schedule(snap, queue, FIT)
    per_device: dict[int, int] = defaultdict(int)
    for p in plan.placements:
        for d in p.devices:
            per_device[d] += p.gpu_milli
    assert set(placed(plan)) == {"f1", "f2", "whole", "f3"}
    assert dict(per_device) == {0: MILLI, 1: MILLI}
    assert waits(plan) == {"f4": WaitReason.NO_FIT}


# --- the pass itself -----------------------------------------------------------------------

@pytest.mark.parametrize("enabled", [True, False])
def test_a_pass_leaves_the_garbage_collector_as_it_found_it(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        plan = schedule(ClusterSnapshot((node("a", gpus=2),)), [job("j", gpus=1)], FIT)
        assert placed(plan) == {"j": "a"}
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
