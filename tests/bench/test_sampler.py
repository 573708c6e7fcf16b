"""Resource sampling: a process's CPU seconds and RSS, over a window, with its children."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.sampler import ResourceSampler, Sample, window_usage

BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


def test_window_usage_takes_cpu_between_the_bracketing_samples_and_sums_rss():
    samples = [Sample(t, "sys", pid, "x", cpu, rss)
               for pid, series in {1: [(0.0, 1.0, 100), (1.0, 1.5, 100), (2.0, 2.5, 100), (3.0, 3.0, 100)],
                                   2: [(0.0, 0.0, 50), (1.0, 0.2, 60), (2.0, 0.4, 70), (3.0, 0.6, 80)]}.items()
               for t, cpu, rss in series]
    usage = window_usage(samples, "sys", 1.0, 3.0)
    assert usage.cpu_s == pytest.approx((3.0 - 1.5) + (0.6 - 0.2))
    assert usage.rss_bytes_max == 180 and usage.processes == 2
    assert usage.cpu_utilisation == pytest.approx(1.9 / 2.0)
    assert window_usage(samples, "other", 0, 3).cpu_s == 0


def test_sampler_sees_a_child_burning_cpu():
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                               f"{BURN.format(s=0.6)!r}])"])
    try:
        sampler = ResourceSampler({"tree": [parent.pid]}, period_s=0.05).start()
        start = time.time()
        parent.wait(30)
        samples = sampler.stop()
    finally:
        parent.kill()
    usage = window_usage(samples, "tree", start - 1, time.time())
    assert usage.processes >= 2  # the parent and the child it started
    assert 0.3 <= usage.cpu_s <= 2.0
    assert usage.rss_bytes_max > 1_000_000
