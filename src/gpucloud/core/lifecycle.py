"""What to do with a launched job given what the engine reports: a pure decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gpucloud.core.runs import RunPhase, RunStatus
from gpucloud.core.states import JobState, Reason


class StopReason(StrEnum):
    """Why a launched job is being stopped; decides its final state and reason."""

    CANCELLED = "cancelled"  # the user asked
    MAX_DURATION = "max_duration"  # it ran past its max duration
    INSUFFICIENT_FUNDS = "insufficient_funds"  # its tenant's wallet ran out
    BUDGET_EXHAUSTED = "budget_exhausted"  # a budget of its tenant was spent
    PLATFORM_FAULT = "platform_fault"  # its GPU or node failed: it restarts elsewhere


_FINAL: dict[StopReason, tuple[JobState, Reason, str]] = {
    StopReason.CANCELLED: (JobState.CANCELLED, Reason.CANCELLED_BY_USER, "stopped on request"),
    StopReason.MAX_DURATION: (
        JobState.FAILED,
        Reason.MAX_DURATION_EXCEEDED,
        "ran past its max duration and was stopped",
    ),
    StopReason.INSUFFICIENT_FUNDS: (
        JobState.FAILED,
        Reason.INSUFFICIENT_FUNDS,
        "stopped because the wallet ran out; top up to run again",
    ),
    StopReason.BUDGET_EXHAUSTED: (
        JobState.FAILED,
        Reason.BUDGET_EXHAUSTED,
        "stopped because a budget of the tenant was spent; it runs again when the budget resets",
    ),
    # Used only when a restart is not possible (the budget is spent): a faulted job restarts.
    StopReason.PLATFORM_FAULT: (
        JobState.FAILED,
        Reason.NODE_FAILURE,
        "stopped because its GPU or node failed",
    ),
}


def final_reason(stop: StopReason) -> Reason:
    """The reason a job stopped for ``stop`` ends with."""
    return _FINAL[stop][1]


@dataclass(frozen=True)
class Observed:
    state: JobState  # STARTING or RUNNING
    run: RunStatus
    stop_request: StopReason | None  # asked for by a user or the platform
    started_at: datetime | None
    max_duration_s: int | None
    stop_requested_at: datetime | None
    stop_reason: StopReason | None
    stop_forced: bool


@dataclass(frozen=True)
class Finish:
    state: JobState
    reason: Reason
    message: str
    exit_code: int | None


@dataclass(frozen=True)
class Decision:
    mark_running: bool = False
    finish: Finish | None = None  # how it ends if it is not restarted
    request_stop: StopReason | None = None  # send the polite stop now
    force_stop: bool = False  # the grace period is over: kill
    # The run ended because of the platform: restart it from its checkpoint if the restart
    # budget allows (``finish`` is what happens otherwise).
    restart: bool = False


def decide(
    o: Observed, now: datetime, grace_s: float, funds_grace_s: float | None = None
) -> Decision:
    """``funds_grace_s`` (shorter) applies when the wallet ran out: the tenant pays for the
    grace period, so it must be short enough to keep the debt within a metering interval."""
    faulted = _faulted(o)
    if o.run.phase is RunPhase.LOST:
        lost = Finish(
            JobState.FAILED, Reason.LOST, o.run.message or "the engine lost the job", None
        )
        return Decision(finish=lost, restart=faulted)
    # Only a run the engine really started is RUNNING; a pending one may still be stopped.
    mark_running = o.state is JobState.STARTING and o.run.phase is not RunPhase.PENDING
    if o.run.phase is RunPhase.EXITED:
        return Decision(mark_running=mark_running, finish=_finish(o), restart=faulted)
    if o.stop_requested_at is None:
        reason = _stop_reason(o, now)
        return Decision(mark_running=mark_running, request_stop=reason)
    if o.stop_reason is StopReason.INSUFFICIENT_FUNDS and funds_grace_s is not None:
        grace_s = funds_grace_s
    overdue = (now - o.stop_requested_at).total_seconds() >= grace_s
    return Decision(mark_running=mark_running, force_stop=overdue and not o.stop_forced)


def _faulted(o: Observed) -> bool:
    """Did the platform end this run (so it restarts)? The health controller's stop says so;
    so does an engine that saw the node fail, unless someone asked for another stop (a cancel,
    an empty wallet), which wins."""
    fault = StopReason.PLATFORM_FAULT
    if fault in (o.stop_reason, o.stop_request):
        return True
    return o.run.platform_fault and o.stop_reason is None and o.stop_request is None


def _stop_reason(o: Observed, now: datetime) -> StopReason | None:
    if o.stop_request is not None:
        return o.stop_request
    limit, started = o.max_duration_s, o.started_at
    if limit is not None and started is not None and (now - started).total_seconds() >= limit:
        return StopReason.MAX_DURATION
    return None


def finish_unlaunched(reason: StopReason) -> Finish:
    """A stop asked for before the job ever ran: it ends without an exit code."""
    state, final_reason, message = _FINAL[reason]
    return Finish(state, final_reason, f"{message} before it was launched", None)


def _finish(o: Observed) -> Finish:
    code = o.run.exit_code
    if o.run.platform_fault and o.stop_reason in (None, StopReason.PLATFORM_FAULT):
        detail = o.run.message or "the node it ran on failed"
        return Finish(JobState.FAILED, Reason.NODE_FAILURE, f"{detail} (exit code {code})", code)
    if o.stop_reason is not None:
        state, reason, message = _FINAL[o.stop_reason]
        return Finish(state, reason, f"{message} (exit code {code})", code)
    if code == 0:
        return Finish(JobState.SUCCEEDED, Reason.COMPLETED, "exited with code 0", 0)
    return Finish(JobState.FAILED, Reason.EXIT_NONZERO, f"exited with code {code}", code)
