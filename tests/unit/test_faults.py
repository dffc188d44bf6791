from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gpucloud.core.errors import InvalidRequest
from gpucloud.core.faults import (
    DEFAULT_XID_POLICY,
    FaultAction,
    FaultSignal,
    SignalKind,
    classify,
    parse_xid_policy,
    policy_document,
)
from gpucloud.core.restarts import RestartPolicy, decide_restart, lost_run_seconds

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def xid(code: int, device: int | None = 0) -> FaultSignal:
    return FaultSignal(1, "n0", SignalKind.XID, T0, device, code)


@pytest.mark.parametrize("code", [13, 31, 43, 45, 68])
def test_the_issue_s_application_xids_blame_the_job(code: int) -> None:
    decision = classify(xid(code), DEFAULT_XID_POLICY)
    assert decision.action is FaultAction.APPLICATION and not decision.stops_jobs


@pytest.mark.parametrize(("code", "action", "scope"), [
    (48, FaultAction.RESET_GPU, "gpu"), (94, FaultAction.RESET_GPU, "gpu"),
    (79, FaultAction.DRAIN_NODE, "node"), (64, FaultAction.DRAIN_NODE, "node"),
])
def test_hardware_xids_quarantine_what_failed(code: int, action: FaultAction, scope: str) -> None:
    decision = classify(xid(code), DEFAULT_XID_POLICY)
    assert (decision.action, decision.scope, decision.alert) == (action, scope, False)
    assert decision.stops_jobs and decision.description.startswith(f"Xid {code}: ")


def test_an_unknown_xid_drains_and_alerts() -> None:
    decision = classify(xid(4242), DEFAULT_XID_POLICY)
    assert (decision.action, decision.scope, decision.alert) == (
        FaultAction.DRAIN_NODE, "node", True)


def test_a_gpu_fault_without_a_gpu_widens_to_the_node() -> None:
    assert classify(xid(48, device=None), DEFAULT_XID_POLICY).scope == "node"
    ecc = FaultSignal(2, "n0", SignalKind.ECC, T0, 3)
    assert classify(ecc, DEFAULT_XID_POLICY).action is FaultAction.RESET_GPU
    silent = FaultSignal(3, "n0", SignalKind.HEARTBEAT_LOSS, T0)
    assert classify(silent, DEFAULT_XID_POLICY).action is FaultAction.DRAIN_NODE
    hot = FaultSignal(4, "n0", SignalKind.THERMAL, T0, 1, 95)
    assert not classify(hot, DEFAULT_XID_POLICY).stops_jobs


def test_operators_edit_the_policy_and_bad_entries_are_named() -> None:
    table = parse_xid_policy({"13": "drain-node", 900: {"action": "observe", "meaning": "x"}})
    assert classify(xid(13), table).action is FaultAction.DRAIN_NODE
    assert classify(xid(900), table).action is FaultAction.OBSERVE
    assert parse_xid_policy(policy_document(table)) == table
    with pytest.raises(InvalidRequest, match="Xid 13: unknown action 'nope'"):
        parse_xid_policy({13: "nope"})
    with pytest.raises(InvalidRequest, match="the key must be a number"):
        parse_xid_policy({"x": "observe"})
    with pytest.raises(InvalidRequest, match="mapping"):
        parse_xid_policy(["observe"])


def test_restarts_back_off_and_give_up_without_progress() -> None:
    policy = RestartPolicy(budget=3, backoff_base_s=2, backoff_max_s=5)
    assert [decide_restart(n, policy).delay_s for n in range(3)] == [2, 4, 5]
    assert not decide_restart(3, policy).restart
    assert "resets whenever the job checkpoints" in decide_restart(3, policy).message


def test_lost_time_counts_from_the_later_of_start_and_checkpoint() -> None:
    start = datetime(2026, 1, 1, 10, tzinfo=UTC)
    fault = datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert lost_run_seconds(fault, start, None) == 3600
    assert lost_run_seconds(fault, start, datetime(2026, 1, 1, 10, 50, tzinfo=UTC)) == 600
    # a checkpoint of an earlier attempt: this attempt lost everything since it started
    assert lost_run_seconds(fault, start, datetime(2026, 1, 1, 9, tzinfo=UTC)) == 3600
    assert lost_run_seconds(fault, None, None) == 0


def test_exit_hints_find_the_last_gpu_error_line() -> None:
    from gpucloud.core.faults import exit_hint

    assert exit_hint("all good\nexit 1\n") is None
    tail = ("NCCL WARN Call to ibv_reg_mr failed\nstep 3\n"
            "RuntimeError: CUDA error: an illegal memory access was encountered\n")
    assert exit_hint(tail) == "CUDA error: an illegal memory access was encountered"
    assert exit_hint("torch.distributed.DistBackendError: ncclInternalError: x") == (
        "ncclInternalError: x")
