"""How the control loop yields the CPU: its rest after a wake-up, and its thread's priority."""

import os
import threading
import time

import pytest

from gpucloud.controllers.runtime import CONTROLLER_NICE, ControlLoop


def test_short_passes_wait_only_the_coalescing_window() -> None:
    loop = ControlLoop([], tick_s=1.0, coalesce_s=0.05, idle_per_busy=2.0)
    assert loop.rest_after_wake_s(0.01) == 0.05


def test_passes_that_burn_cpu_rest_in_proportion_so_the_api_keeps_most_of_a_core() -> None:
    loop = ControlLoop([], tick_s=1.0, coalesce_s=0.05, idle_per_busy=2.0)
    rest = loop.rest_after_wake_s(0.2)
    assert rest == 0.4
    assert 0.2 / (0.2 + rest) <= 1 / 3 + 1e-9


class _SeesItsPriority:
    name = "priority"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def reconcile_once(self) -> None:
        self.seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))


@pytest.mark.parametrize("lower", [False, True])
def test_the_controllers_thread_runs_at_a_lower_priority_only_when_asked(lower: bool) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    controller = _SeesItsPriority()
    loop = ControlLoop([controller], tick_s=0.01)
    loop.lower_priority = lower
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while not controller.seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        loop.stop()
    expected = min(own + CONTROLLER_NICE, 19) if lower else own
    assert controller.seen and controller.seen[0] == expected
    assert os.getpriority(os.PRIO_PROCESS, 0) == own  # the rest of the process is untouched
