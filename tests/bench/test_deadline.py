"""The hub's deadline timer: fires once per arm, never before its deadline, and (with a timerfd)
well inside the millisecond that gevent's own timers round to."""
from __future__ import annotations

import statistics
import sys
import time

import gevent
import gevent.event
import pytest

from bench.load.deadline import DeadlineTimer


def test_fires_once_per_arm_never_early_and_within_a_fraction_of_a_millisecond():
    deadlines = [time.perf_counter_ns() + 20_000_000 + i * 3_000_000 for i in range(30)]
    fired: list[int] = []
    done = gevent.event.Event()

    def on_time() -> None:
        fired.append(time.perf_counter_ns())
        if len(fired) < len(deadlines):
            timer.arm(deadlines[len(fired)])
        else:
            done.set()

    timer = DeadlineTimer(on_time)
    precise = timer.precise
    try:
        timer.arm(deadlines[0])
        assert done.wait(5)
        gevent.sleep(0.02)  # nothing more fires
    finally:
        timer.close()
    assert len(fired) == len(deadlines)
    late_us = [(f - d) / 1000 for f, d in zip(fired, deadlines)]
    assert min(late_us) >= 0
    if precise:  # a timerfd (Linux); gevent's own timers are up to 1000 us late
        assert statistics.median(late_us) < 500


def test_a_deadline_already_past_fires_at_once():
    fired = gevent.event.Event()
    timer = DeadlineTimer(fired.set)
    try:
        if sys.platform.startswith("linux"):
            assert timer.precise
        started = time.perf_counter()
        timer.arm(time.perf_counter_ns() - 1_000_000)
        assert fired.wait(1)
        assert time.perf_counter() - started < 0.05
    finally:
        timer.close()


@pytest.fixture(autouse=True)
def fresh_hub():
    yield
    gevent.get_hub().destroy(destroy_loop=True)  # leave no hub behind in the test process
