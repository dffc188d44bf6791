"""Invariants of a full scheduling pass over random clusters, running work and queues."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gpucloud.scheduling.decisions import PreemptReason, Running, SchedulePlan
from gpucloud.scheduling.filters import feasible
from gpucloud.scheduling.gang import LEVELS, Domains, allowed_levels, domain_key, place_gang
from gpucloud.scheduling.model import MILLI, ClusterSnapshot, Device, Node, Topology, Workload
from gpucloud.scheduling.policies import BestFitScorer
from gpucloud.scheduling.scheduler import SchedulerConfig, schedule
from gpucloud.scheduling.state import ClusterState
from tests.unit.scheduling.cluster import job, snapshot_of

MODELS = ("G2", "T4")
TENANTS = ("a", "b", "c")


@st.composite
def clusters(draw: st.DrawFn) -> list[Node]:
    out = []
    for i in range(draw(st.integers(1, 6))):
        gpus = draw(st.sampled_from((0, 1, 2, 4, 8, 8)))
        model = draw(st.sampled_from(MODELS))
        topo = Topology(draw(st.sampled_from(("", "i1", "i2"))),
                        draw(st.sampled_from(("", "L1", "L2"))), "")
        out.append(Node(f"n{i}", draw(st.integers(8, 64)) * 1000, draw(st.integers(2, 64)) * 1024,
                        tuple(Device(j, model) for j in range(gpus)),
                        healthy=draw(st.booleans()) or i == 0, topology=topo))
    return out


@st.composite
def one_job(draw: st.DrawFn, wid: str, gang: str | None = None, size: int = 1,
            gpus: int | None = None, tenant: str | None = None,
            priority: int | None = None) -> Workload:
    count = draw(st.sampled_from((0, 1, 1, 2, 4))) if gpus is None else gpus
    milli = draw(st.sampled_from((250, 500, MILLI))) if count == 1 and gang is None else MILLI
    return job(wid, count, milli, tenant if tenant is not None else draw(st.sampled_from(TENANTS)),
               priority if priority is not None else draw(st.integers(0, 2)), gang, size,
               draw(st.none() | st.floats(0, 1000)), draw(st.none() | st.floats(1, 1000)),
               cpu=draw(st.integers(0, 4)) * 1000,
               models=draw(st.none() | st.just(frozenset({"G2"}))) if count else None)


@st.composite
def queues(draw: st.DrawFn, prefix: str) -> list[Workload]:
    out: list[Workload] = []
    for i in range(draw(st.integers(0, 16))):
        if draw(st.integers(0, 3)) == 0:  # a gang, sometimes missing a member
            size = draw(st.integers(2, 3))
            gpus = draw(st.sampled_from((1, 2, 4)))
            tenant, prio = draw(st.sampled_from(TENANTS)), draw(st.integers(0, 2))
            queued = size - int(draw(st.integers(0, 5)) == 0)
            out += [draw(one_job(f"{prefix}{i}-{k}", f"{prefix}g{i}", size, gpus, tenant, prio))
                    for k in range(queued)]
        else:
            out.append(draw(one_job(f"{prefix}{i}")))
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Node], ClusterSnapshot, list[Running],
                                        list[Workload], SchedulerConfig]:
    nodes = draw(clusters())
    state = ClusterState(nodes)
    running: list[Running] = []
    for drawn in draw(queues("r")):  # running work, placed first-fit wherever it fits
        w = replace(drawn, gang_size=1)  # members placed one by one, as gangs once were
        fit = np.flatnonzero(feasible(state, w.shape, np.arange(len(state))))
        if fit.size:
            p = state.claim(int(fit[0]), w, state.choose_devices(int(fit[0]), w.shape))
            running.append(Running(w, p, draw(st.none() | st.floats(1, 500) | st.floats(1, 500))))
    quotas = draw(st.none() | st.fixed_dictionaries(
        {t: st.integers(0, 8).map(lambda g: g * MILLI) for t in TENANTS}))
    often = st.integers(0, 3).map(bool)  # True three times in four
    config = SchedulerConfig(quotas=quotas, borrowing=draw(st.booleans()),
                             preemption=draw(often), backfill=draw(often),
                             gang_max_level=draw(st.sampled_from(LEVELS)))
    return nodes, snapshot_of(nodes, state), running, draw(queues("q")), config


def _check_capacity(nodes: list[Node], holding: list[tuple[Workload, str, tuple[int, ...]]]
                    ) -> None:
    by_name = {n.name: n for n in nodes}
    cpu: dict[str, int] = defaultdict(int)
    gpu: dict[tuple[str, int], int] = defaultdict(int)
    for w, name, devices in holding:
        n = by_name[name]
        cpu[name] += w.cpu_milli
        assert len(devices) == w.gpu_count == len(set(devices))
        for j in devices:
            assert n.devices[j].healthy
            assert w.gpu_models is None or n.devices[j].model in w.gpu_models
            gpu[(name, j)] += w.gpu_milli
    for name, used in cpu.items():
        assert used <= by_name[name].cpu_milli  # no node over-committed
    assert all(v <= MILLI for v in gpu.values())  # no device above 1000 milli
    for w, name, devices in holding:  # whole GPUs are never shared
        if w.gpu_milli == MILLI:
            assert all(gpu[(name, j)] == MILLI for j in devices)


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_a_pass_keeps_every_invariant(scenario: tuple[list[Node], ClusterSnapshot, list[Running],
                                                      list[Workload], SchedulerConfig]) -> None:
    nodes, snap, running, queue, config = scenario
    plan = schedule(snap, queue, BestFitScorer(), config, running)
    for what, seen in (("gang placed", plan.gang_levels), ("preemption", plan.preemptions),
                       ("reservation", plan.reservation)):
        if seen:
            event(what)  # coverage of the rules, shown by --hypothesis-show-statistics
    by_id = {w.id: w for w in queue}
    run_by_id = {r.workload.id: r for r in running}

    # Every queued workload is decided exactly once.
    decided = [p.workload_id for p in plan.placements] + [w.workload_id for w in plan.waiting]
    assert sorted(decided) == sorted(by_id)

    # Capacity and constraints hold for what runs afterwards.
    gone = {p.workload_id for p in plan.preemptions}
    holding = [(r.workload, r.placement.node, r.placement.devices) for r in running
               if r.workload.id not in gone]
    holding += [(by_id[p.workload_id], p.node, p.devices) for p in plan.placements]
    _check_capacity(nodes, holding)
    by_name = {n.name: n for n in nodes}
    assert all(by_name[p.node].healthy for p in plan.placements)

    # Gangs: all members or none, inside one domain of an allowed level.
    placed_ids = {p.workload_id: p.node for p in plan.placements}
    gangs: dict[str, list[Workload]] = defaultdict(list)
    for w in queue:
        if w.gang_id is not None:
            gangs[w.gang_id].append(w)
    for gid, members in gangs.items():
        got = [w for w in members if w.id in placed_ids]
        assert len(got) in (0, len(members))
        if got:
            assert len(members) == members[0].gang_size
            level = plan.gang_levels[gid]
            assert level in allowed_levels(config.gang_max_level)
            assert len({domain_key(by_name[placed_ids[w.id]], level) for w in got}) == 1

    # Preemption: never a higher priority; equal only to reclaim lent quota; gangs go whole.
    for pre in plan.preemptions:
        victim, preemptor = run_by_id[pre.workload_id].workload, by_id[pre.for_workload]
        assert pre.for_workload in placed_ids
        assert victim.priority <= preemptor.priority
        if pre.reason is PreemptReason.PRIORITY:
            assert victim.priority < preemptor.priority
        else:
            assert config.quotas is not None
        if victim.gang_id is not None:
            assert {r.workload.id for r in running if r.workload.gang_id == victim.gang_id} <= gone

    # Without borrowing, no tenant that was given GPUs ends above its quota.
    if config.quotas is not None and not config.borrowing:
        use: dict[str, int] = defaultdict(int)
        for w, _, _ in holding:
            use[w.tenant] += w.total_gpu_milli
        for p in plan.placements:
            w = by_id[p.workload_id]
            assert w.total_gpu_milli == 0 or use[w.tenant] <= config.quotas.get(w.tenant, 0)

    # The reservation still holds at its start, given everything running or placed now.
    if plan.reservation is not None:
        _check_reservation(nodes, plan, running, gone, by_id, config)


def _check_reservation(nodes: list[Node], plan: SchedulePlan, running: list[Running],
                       gone: set[str], by_id: dict[str, Workload],
                       config: SchedulerConfig) -> None:
    assert plan.reservation is not None
    start = plan.reservation.start_in_s
    state = ClusterState(nodes)
    for r in running:
        if r.workload.id not in gone and (r.remaining_s is None or r.remaining_s > start):
            state.claim(state.index[r.placement.node], r.workload, r.placement.devices)
    for p in plan.placements:
        w = by_id[p.workload_id]
        if w.time_limit_s is None or w.time_limit_s > start:
            state.claim(state.index[p.node], w, p.devices)
    members = tuple(by_id[i] for i in plan.reservation.workload_ids)
    if members[0].gang_id is None:
        assert feasible(state, members[0].shape, np.arange(len(state))).any()
    else:
        req = members[0].topology
        level = req.require if req is not None and req.require else config.gang_max_level
        got = place_gang(state, BestFitScorer(), members, Domains.build(nodes), level)
        assert got is not None
