from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpucloud.core.runs import RunPhase, RunStatus, combine

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def exited(code: int, after_s: float = 0, fault: bool = False) -> RunStatus:
    return RunStatus(RunPhase.EXITED, code, finished_at=T0 + timedelta(seconds=after_s),
                     platform_fault=fault)


RUNNING = RunStatus(RunPhase.RUNNING)


def test_a_gang_runs_while_any_rank_runs() -> None:
    gang = combine([RUNNING, exited(0)])
    assert gang.status.phase is RunPhase.RUNNING and not gang.tear_down
    assert combine([RunStatus(RunPhase.PENDING)] * 2).status.phase is RunPhase.PENDING


def test_a_failed_rank_dooms_the_survivors() -> None:
    assert combine([RUNNING, exited(1)]).tear_down
    assert combine([RUNNING, RunStatus(RunPhase.LOST, message="gone")]).tear_down


def test_the_first_failure_is_the_gang_s_exit_code() -> None:
    # rank 1 failed first; rank 0 was then torn down (SIGTERM, 143)
    gang = combine([exited(143, after_s=5), exited(3, after_s=1)])
    assert gang.status.phase is RunPhase.EXITED and gang.status.exit_code == 3
    assert gang.status.finished_at == T0 + timedelta(seconds=5)
    assert combine([exited(0), exited(0, 2)]).status.exit_code == 0


def test_lost_and_platform_faults_carry_through() -> None:
    assert combine([RunStatus(RunPhase.LOST)] * 2).status.phase is RunPhase.LOST
    assert combine([exited(0), RunStatus(RunPhase.LOST)]).status.phase is RunPhase.LOST
    assert combine([exited(1, fault=True), exited(143)]).status.platform_fault
