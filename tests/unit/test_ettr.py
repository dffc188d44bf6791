from __future__ import annotations

import random

import pytest

from gpucloud.core.ettr import (
    RATE_PER_GPU_HOUR,
    ROOT_CAUSES,
    Params,
    simulate,
    simulate_job,
    young_daly_interval,
)


def test_the_failure_rate_is_llama3_s() -> None:
    # 466 interruptions in 54 days on 16,384 GPUs
    assert pytest.approx(466) == RATE_PER_GPU_HOUR * 16_384 * 54 * 24
    # the rows of Table 5 modelled here cover about 97% of its interruptions
    assert sum(share for share, _, _ in ROOT_CAUSES.values()) == pytest.approx(97.3, abs=0.1)


def test_a_full_size_job_sees_about_as_many_interruptions_as_llama3() -> None:
    runs = [simulate_job(16_384, Params(), random.Random(seed)) for seed in range(5)]
    mean = sum(r.interruptions for r in runs) / len(runs)
    assert 400 < mean < 540
    assert all(r.platform_restarts + r.own_errors == r.interruptions for r in runs)
    assert all(0 < r.ettr < 1 for r in runs)


def test_faster_recovery_and_cheaper_checkpoints_raise_ettr() -> None:
    slow = simulate([4096], Params(reinit_s=600, checkpoint_cost_s=10), range(3))[0]
    fast = simulate([4096], Params(reinit_s=10, checkpoint_cost_s=0.5), range(3))[0]
    assert fast.ettr > slow.ettr
    small, large = simulate([1024, 16_384], Params(), range(3))
    assert small.ettr > large.ettr  # more GPUs, more faults


def test_young_daly() -> None:
    assert young_daly_interval(2, 10_000) == pytest.approx(200)
