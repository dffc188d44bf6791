from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpucloud.core.ids import IdFactory


def test_ids_sort_by_time_and_are_unique_within_a_millisecond() -> None:
    ids = IdFactory()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    made = [ids.new("job", t0) for _ in range(1000)]
    made += [ids.new("job", t0 + timedelta(seconds=1)) for _ in range(10)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(i.startswith("job_") and len(i) == 21 for i in made)


def test_a_clock_that_steps_back_does_not_break_order() -> None:
    ids = IdFactory()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    later = ids.new("job", t0 + timedelta(seconds=5))
    earlier = ids.new("job", t0)
    assert earlier > later
