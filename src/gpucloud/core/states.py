"""Job lifecycle: one enum, one transition table. ``store.transitions`` is the only door."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from gpucloud.core.errors import IllegalTransition


class Workload(StrEnum):
    """What a job row runs for: a batch job, or the process behind an instance or a replica of
    an inference service (whose own row, ``Job.owner_id``, holds the product's state)."""

    JOB = "job"
    INSTANCE = "instance"
    SERVICE_REPLICA = "service-replica"


class JobState(StrEnum):
    PENDING = "PENDING"  # stored, not yet admitted
    QUEUED = "QUEUED"  # admitted, waiting for capacity
    SCHEDULED = "SCHEDULED"  # placed: allocation rows hold its devices
    STARTING = "STARTING"  # handed to the engine, process not yet confirmed
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def holds_allocation(self) -> bool:
        return self in HOLDS_ALLOCATION


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
HOLDS_ALLOCATION = frozenset({JobState.SCHEDULED, JobState.STARTING, JobState.RUNNING})

_S = JobState
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    _S.PENDING: frozenset({_S.QUEUED, _S.FAILED, _S.CANCELLED}),
    _S.QUEUED: frozenset({_S.SCHEDULED, _S.FAILED, _S.CANCELLED}),
    # back to QUEUED when the chosen node vanished before launch
    _S.SCHEDULED: frozenset({_S.STARTING, _S.QUEUED, _S.FAILED, _S.CANCELLED}),
    # back to QUEUED when a platform fault ended the run: it restarts from its checkpoint
    _S.STARTING: frozenset({_S.RUNNING, _S.QUEUED, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.QUEUED, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def check_transition(object_id: str, current: JobState, target: JobState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(object_id, current.value, target.value)


class Reason(StrEnum):
    """Why a job is in its state: machine-readable, shown next to a human sentence."""

    SUBMITTED = "SUBMITTED"
    ADMITTED = "ADMITTED"
    WAITING_FOR_RESOURCES = "WAITING_FOR_RESOURCES"
    WAITING_IN_QUEUE = "WAITING_IN_QUEUE"
    PLACED = "PLACED"
    NODE_GONE = "NODE_GONE"
    LAUNCHED = "LAUNCHED"
    LAUNCH_FAILED = "LAUNCH_FAILED"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    EXIT_NONZERO = "EXIT_NONZERO"
    CANCELLED_BY_USER = "CANCELLED_BY_USER"
    MAX_DURATION_EXCEEDED = "MAX_DURATION_EXCEEDED"
    LOST = "LOST"
    NODE_FAILURE = "NODE_FAILURE"  # the platform's fault, not the job's
    RESTARTING = "RESTARTING"  # requeued after a platform fault, to resume from its checkpoint
    RESTART_BUDGET_EXHAUSTED = "RESTART_BUDGET_EXHAUSTED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    WAITING_FOR_FUNDS = "WAITING_FOR_FUNDS"
    WAITING_FOR_QUOTA = "WAITING_FOR_QUOTA"
    WAITING_FOR_BUDGET = "WAITING_FOR_BUDGET"
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
