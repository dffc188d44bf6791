"""The pure core of inference services: the spec's rules, the state tables, the autoscaling
decision (with properties) and the rollout plan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpucloud.core.errors import IllegalTransition, InvalidRequest
from gpucloud.core.services import (
    REPLICA_TRANSITIONS,
    SERVICE_TRANSITIONS,
    Plan,
    ReplicaState,
    ReplicaView,
    Sample,
    ServiceSpec,
    ServiceState,
    check_replica_transition,
    check_service_transition,
    desired_replicas,
    drained,
    parse_service_spec,
    plan,
    service_state,
)


def spec(**extra: object) -> ServiceSpec:
    data: dict[str, object] = {"command": ["serve"], "gpus": 0, "max_replicas": 8,
                               "target_rps": 10, "stabilization_s": 30,
                               "scale_to_zero_s": 60}
    data.update(extra)
    return parse_service_spec(data)


# --- the spec ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "words"), [
    ({"min_replicas": 3, "max_replicas": 2}, "more than max_replicas"),
    ({"target_rps": 1, "target_concurrency": 2}, "not both"),
    ({"readiness_path": "health"}, "starting with '/'"),
    ({"env": {"PORT": "1"}}, "PORT is set by the platform"),
    ({"gpus": 1, "gpu_type": "NOPE"}, "NOPE"),
    ({"target_rps": 0}, "greater than 0"),
])
def test_bad_specs_say_what_to_fix(body: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_service_spec({"command": ["serve"], **body})
    assert words in str(err.value)


def test_a_replica_job_gets_its_port_and_the_human_fields_parse() -> None:
    s = parse_service_spec({"command": "python serve.py", "memory": "1G", "gpus": 0,
                            "scale_to_zero": "2m", "env": {"A": "b"}})
    assert s.command == ["/bin/sh", "-c", "python serve.py"]
    assert (s.memory_mib, s.scale_to_zero_s) == (1024, 120)
    job = s.job_spec("api-r1", 4312)
    assert job.env == {"A": "b", "PORT": "4312"}
    assert job.name == "api-r1" and job.gpus == 0


# --- states --------------------------------------------------------------------------------------


def test_every_state_has_a_row_and_ended_states_are_final() -> None:
    assert set(SERVICE_TRANSITIONS) == set(ServiceState)
    assert set(REPLICA_TRANSITIONS) == set(ReplicaState)
    assert not REPLICA_TRANSITIONS[ReplicaState.STOPPED]
    assert not SERVICE_TRANSITIONS[ServiceState.DELETED]
    with pytest.raises(IllegalTransition):
        check_replica_transition("r", ReplicaState.DRAINING, ReplicaState.READY)
    with pytest.raises(IllegalTransition):
        check_service_transition("s", ServiceState.DELETING, ServiceState.RUNNING)
    check_replica_transition("r", ReplicaState.UNREADY, ReplicaState.READY)


def test_service_state_follows_its_replicas() -> None:
    assert service_state(False, 2, 1, 2) is ServiceState.RUNNING
    assert service_state(False, 2, 0, 2) is ServiceState.STARTING
    assert service_state(False, 0, 0, 0) is ServiceState.IDLE
    assert service_state(False, 0, 0, 1) is ServiceState.STARTING  # the last one stopping
    assert service_state(True, 0, 1, 1) is ServiceState.DELETING
    assert service_state(True, 0, 0, 0) is ServiceState.DELETED


# --- autoscaling ---------------------------------------------------------------------------------


def window(*rps: float, step: float = 1.0, end: float = 100.0) -> list[Sample]:
    return [Sample(end - step * (len(rps) - 1 - i), r, 0.0) for i, r in enumerate(rps)]


def test_scales_up_at_once_and_down_only_after_the_window() -> None:
    s = spec()
    assert desired_replicas(s, window(5, 35), 100, 99, 1).desired == 4
    # a dip inside the window keeps the replicas
    long = [Sample(t, 35 if t < 80 else 5, 0) for t in range(60, 101)]
    assert desired_replicas(s, long, 100, 99, 4).desired == 4
    # 30 s of low load (the whole window): down
    low = [Sample(t, 35 if t < 70 else 5, 0) for t in range(60, 101)]
    assert desired_replicas(s, low, 100, 99, 4).desired == 1


def test_a_fresh_window_does_not_scale_down() -> None:
    s = spec()
    scale = desired_replicas(s, window(1, 1, 1), 100, 99, 3)
    assert (scale.desired, scale.why) == (3, "stabilising")


def test_scale_to_zero_after_the_idle_time_and_a_waiting_request_asks_for_one() -> None:
    s = spec()
    quiet = [Sample(t, 0, 0) for t in range(0, 101)]
    assert desired_replicas(s, quiet, 100, 50, 1).desired == 1  # 50 s idle < 60 s
    assert desired_replicas(s, quiet, 100, 39, 1).desired == 0
    cold = [*quiet[:-1], Sample(100, 0, 1, waiting=1)]
    assert desired_replicas(s, cold, 100, 0, 0).desired == 1
    assert desired_replicas(spec(min_replicas=2), quiet, 100, 0, 2).desired == 2


def test_concurrency_target_and_fixed_size() -> None:
    c = spec(target_rps=None, target_concurrency=2)
    assert desired_replicas(c, [Sample(100, 0, 5.0)], 100, 100, 1).desired == 3
    fixed = spec(target_rps=None, min_replicas=2, max_replicas=4)
    assert desired_replicas(fixed, window(500), 100, 100, 2).desired == 2


loads = st.lists(st.tuples(st.floats(0, 500), st.floats(0, 50)), min_size=0, max_size=40)


@given(loads=loads, lo=st.integers(0, 4), extra=st.integers(0, 6), idle=st.floats(0, 200),
       current=st.integers(0, 12), waiting=st.booleans())
def test_desired_is_always_within_bounds(loads: list[tuple[float, float]], lo: int,
                                         extra: int, idle: float, current: int,
                                         waiting: bool) -> None:
    s = spec(min_replicas=lo, max_replicas=max(1, lo + extra))
    samples = [Sample(100 - len(loads) + i + 1, r, c) for i, (r, c) in enumerate(loads)]
    if waiting:
        samples.append(Sample(100, 0, 1, waiting=1))
    got = desired_replicas(s, samples, 100, 100 - idle, current).desired
    if got == 0:
        assert lo == 0 and not waiting and idle >= s.scale_to_zero_s
    else:
        assert max(1, lo) <= got <= s.max_replicas
    if waiting:
        assert got >= 1


@given(loads=st.lists(st.floats(0, 500), min_size=1, max_size=30), bump=st.floats(0, 500))
def test_more_load_never_means_fewer_replicas(loads: list[float], bump: float) -> None:
    s = spec()
    base = window(*loads)
    more = window(*loads[:-1], loads[-1] + bump)
    assert (desired_replicas(s, more, 100, 99, 1).desired
            >= desired_replicas(s, base, 100, 99, 1).desired)


@given(high=st.floats(11, 500), lows=st.lists(st.floats(0, 9.9), min_size=1, max_size=29))
def test_no_flapping_inside_the_window(high: float, lows: list[float]) -> None:
    """One high sample within the window holds the replicas it asked for."""
    s = spec()
    samples = [Sample(60, 0, 0), Sample(100 - len(lows), high, 0),
               *[Sample(100 - len(lows) + 1 + i, r, 0) for i, r in enumerate(lows)]]
    want = min(8, -(-int(high * 1000) // 10000))
    assert desired_replicas(s, samples, samples[-1].at_s, 99, 8).desired >= want


# --- the rollout plan ----------------------------------------------------------------------------


def r(id_: str, gen: int, state: ReplicaState) -> ReplicaView:
    return ReplicaView(id_, gen, state)


READY, STARTING, UNREADY = ReplicaState.READY, ReplicaState.STARTING, ReplicaState.UNREADY


def test_scaling_starts_and_drains_the_unready_first() -> None:
    assert plan(3, 1, [r("a", 1, READY)]) == Plan(start=2)
    assert plan(1, 1, [r("a", 1, READY), r("b", 1, STARTING), r("c", 1, READY)]) == Plan(
        drain=("b", "a"))
    assert plan(0, 1, [r("a", 1, READY)]) == Plan(drain=("a",))
    assert plan(2, 1, [r("a", 1, READY), r("b", 1, STARTING)]).empty


def simulate_rollout(desired: int, old: int) -> list[int]:
    """Drive the plan with every started replica becoming READY one step later; returns the
    READY count after each step."""
    replicas = {f"o{i}": r(f"o{i}", 1, READY) for i in range(old)}
    seen, counter = [], 0
    for _ in range(50):
        step = plan(desired, 2, list(replicas.values()))
        for rid in step.drain:
            del replicas[rid]
        for rid, rep in list(replicas.items()):
            if rep.state is STARTING:
                replicas[rid] = r(rid, rep.generation, READY)
        for _ in range(step.start):
            counter += 1
            replicas[f"n{counter}"] = r(f"n{counter}", 2, STARTING)
        seen.append(sum(1 for x in replicas.values() if x.state is READY))
        if step.empty and all(x.generation == 2 for x in replicas.values()):
            break
    assert all(x.generation == 2 for x in replicas.values()), replicas
    assert len(replicas) == desired
    return seen


@given(desired=st.integers(1, 6))
def test_a_rolling_update_never_has_fewer_ready_replicas(desired: int) -> None:
    ready_counts = simulate_rollout(desired, desired)
    assert min(ready_counts) >= desired


def test_a_broken_new_version_keeps_the_old_one_serving() -> None:
    state = [r("o1", 1, READY), r("o2", 1, READY), r("n1", 2, UNREADY)]
    assert plan(2, 2, state) == Plan()  # waits: no drain, no second surge


def test_drain_waits_for_the_router_then_for_requests_or_a_timeout() -> None:
    assert not drained(0, 0.1, settle_s=1, timeout_s=30)
    assert drained(0, 1.5, settle_s=1, timeout_s=30)
    assert not drained(2, 10, settle_s=1, timeout_s=30)
    assert drained(2, 31, settle_s=1, timeout_s=30)


states = st.sampled_from([READY, STARTING, UNREADY])
replica_sets = st.lists(st.tuples(st.integers(1, 2), states), max_size=8)


@given(desired=st.integers(0, 6), replicas=replica_sets)
def test_a_plan_never_drains_ready_replicas_below_what_is_needed(
        desired: int, replicas: list[tuple[int, ReplicaState]]) -> None:
    """Whatever the mix of versions and states: the READY replicas left after the drains are
    at least min(desired, READY now), and nothing is started beyond one surge replica."""
    views = [r(f"x{i}", gen, state) for i, (gen, state) in enumerate(replicas)]
    step = plan(desired, 2, views)
    assert len(set(step.drain)) == len(step.drain)
    ready_now = sum(1 for v in views if v.state is READY)
    ready_left = sum(1 for v in views if v.state is READY and v.id not in step.drain)
    assert ready_left >= min(desired, ready_now)
    live_after = len(views) - len(step.drain) + step.start
    assert live_after <= max(desired + 1, len(views) - len(step.drain))
    if desired == 0:
        assert step.start == 0 and len(step.drain) == len(views)
