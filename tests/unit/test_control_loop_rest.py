"""How long the control loop rests after a wake-up: short passes follow writes, long ones yield."""

from gpucloud.controllers.runtime import ControlLoop


def test_short_passes_wait_only_the_coalescing_window() -> None:
    loop = ControlLoop([], tick_s=1.0, coalesce_s=0.05, idle_per_busy=2.0)
    assert loop.rest_after_wake_s(0.01) == 0.05


def test_passes_that_burn_cpu_rest_in_proportion_so_the_api_keeps_most_of_a_core() -> None:
    loop = ControlLoop([], tick_s=1.0, coalesce_s=0.05, idle_per_busy=2.0)
    rest = loop.rest_after_wake_s(0.2)
    assert rest == 0.4
    assert 0.2 / (0.2 + rest) <= 1 / 3 + 1e-9
