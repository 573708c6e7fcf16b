"""Resource sampling: CPU from a nanosecond clock, PSS so shared pages count once, window
arithmetic, and a sampler that keeps off the generator's CPU and never walks /proc per pass."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from bench.system import sampler as sampler_module
from bench.system.sampler import ResourceSampler, Sample, process_cpu_ns, window_usage

BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"
MIB = 1 << 20


def _series(group: str, rows: dict[int, list[tuple]]) -> list[Sample]:
    return [Sample(t, group, pid, "x", *row) for pid, series in rows.items() for t, *row in series]


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


def test_window_edges_between_readings_are_interpolated_not_snapped_to_the_reading_before():
    # 1 CPU-s per s until t=1, then 0.5: the window [0.5, 1.5] used 0.5 + 0.25
    samples = _series("g", {7: [(0.0, 0.0), (1.0, 1.0), (2.0, 1.5)]})
    assert window_usage(samples, "g", 0.5, 1.5).cpu_s == pytest.approx(0.75)
    assert window_usage(samples, "g", 1.0, 2.0).cpu_s == pytest.approx(0.5)
    # outside the readings the first and last stand: nothing is extrapolated
    assert window_usage(samples, "g", -5.0, 9.0).cpu_s == pytest.approx(1.5)


def test_a_process_born_in_the_window_counts_from_zero_and_one_gone_stops_at_its_last_reading():
    samples = _series("g", {1: [(0.0, 5.0), (1.0, 5.5), (2.0, 6.0), (3.0, 6.5)],
                            2: [(1.5, 0.0), (2.0, 0.3), (3.0, 0.8)],  # born at 1.5 (the zero reading)
                            3: [(0.0, 2.0), (1.0, 2.4)],  # reaped between 1 and 2
                            4: [(0.0, 9.0)]})  # gone before the window
    usage = window_usage(samples, "g", 1.0, 3.0)
    assert usage.cpu_s == pytest.approx(1.0 + 0.8 + 0.0)
    assert usage.processes == 3


def test_window_memory_is_the_largest_pass_sum_with_pss_as_headline_and_the_next_pass_if_none_inside():
    samples = _series("g", {
        1: [(0.0, 0.0, 100, 60, 20, 0.0), (1.0, 0.1, 100, 60, 20, 0.0), (2.0, 0.2, 120, 80, 40, 2.0),
            (5.0, 0.3, 130, 90, 50, 5.0)],
        2: [(0.0, 0.0), (1.0, 0.1, 100, 40, 10, 1.0), (2.0, 0.2, 100, 40, 10, 1.0),
            (5.0, 0.3, 100, 40, 10, 1.0)]})
    usage = window_usage(samples, "g", 0.5, 2.5)
    assert (usage.rss_bytes_max, usage.pss_bytes_max, usage.uss_bytes_max) == (220, 120, 50)
    assert usage.memory_at_s == 2.0
    # no pass inside (3, 4): the first pass after the window stands in
    assert window_usage(samples, "g", 3.0, 4.0).pss_bytes_max == 130


def _child(script: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _release(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.close()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cpu_matches_the_processs_own_clock_within_a_millisecond():
    """205 ms of CPU read to within 1 ms of the child's own clock. The 10 ms clock ticks of
    /proc/<pid>/stat (what psutil reads) can only say 200 or 210: 5 ms off, always."""
    child = _child(
        "import sys, time\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "t0 = time.process_time_ns()\n"
        "while time.process_time_ns() < t0 + 205_000_000: pass\n"
        "t1 = time.process_time_ns()\n"
        "print(t0, t1, flush=True)\n"
        "sys.stdin.readline()\n")
    try:
        assert child.stdout.readline().strip() == "ready"
        sampler = ResourceSampler({"child": [child.pid]}, period_s=30).start()  # start and stop only
        child.stdin.write("go\n")
        child.stdin.flush()
        t0, t1 = map(int, child.stdout.readline().split())
        samples = sampler.stop()
    finally:
        _release(child)
    usage = window_usage(samples, "child", 0, float("inf"))
    truth_s = (t1 - t0) / 1e9
    assert truth_s >= 0.205
    assert usage.cpu_s == pytest.approx(truth_s, abs=0.001)
    assert sampler.errors == []


def test_sampler_sees_a_child_born_after_it_started_and_counts_it_from_birth():
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
    assert 0.6 <= usage.cpu_s <= 2.0  # all of the child's burn, though it began after the start
    assert usage.rss_bytes_max > 1_000_000 and usage.pss_bytes_max > 1_000_000


def test_pss_counts_pages_shared_after_fork_once_and_rss_twice():
    pair = _child(
        "import os, sys, time\n"
        "buf = bytearray(b'\\x01') * (64 << 20)\n"  # written: 64 MiB resident
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(60); os._exit(0)\n"
        "print(pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "os.kill(pid, 9); os.waitpid(pid, 0)\n")
    try:
        forked = int(pair.stdout.readline())
        samples = ResourceSampler({"pair": [pair.pid]}, period_s=30).start().stop()
    finally:
        _release(pair)
    usage = window_usage(samples, "pair", 0, float("inf"))
    assert {s.pid for s in samples} == {pair.pid, forked} and usage.processes == 2
    assert usage.rss_bytes_max >= 128 * MIB  # the buffer, once in each process
    assert usage.rss_bytes_max - usage.pss_bytes_max >= 0.9 * 64 * MIB  # ... and once in PSS
    assert 64 * MIB <= usage.pss_bytes_max < 100 * MIB
    assert usage.uss_bytes_max < 32 * MIB  # shared pages are private to neither


def test_every_reading_is_taken_on_the_sampler_thread_and_no_pass_walks_proc(monkeypatch):
    readers: set[int] = set()
    listed: list[str] = []
    real_cpu, real_listdir = process_cpu_ns, os.listdir

    def cpu(pid: int) -> int:
        readers.add(threading.get_native_id())
        return real_cpu(pid)

    def listdir(path="."):
        listed.append(str(path))
        return real_listdir(path)

    monkeypatch.setattr(sampler_module, "process_cpu_ns", cpu)
    monkeypatch.setattr(os, "listdir", listdir)
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                               f"{BURN.format(s=0.3)!r}])"])
    try:
        sampler = ResourceSampler({"tree": [parent.pid]}, period_s=0.02).start()
        parent.wait(30)
        samples = sampler.stop()
    finally:
        parent.kill()
    assert len({s.t_epoch_s for s in samples}) >= 5
    assert readers == {sampler.native_id} and threading.get_native_id() not in readers
    assert "/proc" not in [p.rstrip("/") for p in listed]  # only /proc/<pid>/task, rarely
    assert len({s.pid for s in samples}) >= 2


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_sampler_thread_keeps_off_the_cpus_its_creator_is_pinned_to():
    cpus = sorted(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})  # the harness, beside the generator
    try:
        sampler = ResourceSampler({"me": [os.getpid()]}, period_s=30).start()
        try:
            on = os.sched_getaffinity(sampler.native_id)
        finally:
            sampler.stop()
    finally:
        os.sched_setaffinity(0, before)
    assert on and cpus[0] not in on
    explicit = ResourceSampler({"me": [os.getpid()]}, period_s=30, cpus=[cpus[-1]]).start()
    try:
        assert os.sched_getaffinity(explicit.native_id) == {cpus[-1]}
    finally:
        explicit.stop()


def test_a_young_process_that_grows_and_exits_between_start_and_stop_still_shows_its_memory():
    """A load generator lives a few seconds and is reaped before ``stop``: its memory is read
    while it is young, not only at the start (when it had not yet grown)."""
    child = _child(
        "import sys, time\n"
        "print('ready', flush=True)\n"
        "time.sleep(0.3)\n"
        "buf = bytearray(b'\\x01') * (64 << 20)\n"
        "time.sleep(1.2)\n")
    try:
        assert child.stdout.readline().strip() == "ready"
        sampler = ResourceSampler({"gen": [child.pid]}, period_s=0.05, memory_period_s=None).start()
        child.wait(30)
        samples = sampler.stop()
    finally:
        _release(child)
    usage = window_usage(samples, "gen", 0, float("inf"))
    assert usage.pss_bytes_max >= 64 * MIB
    assert samples[0].pss_bytes is not None and samples[0].pss_bytes < 32 * MIB  # before it grew


def test_steal_is_read_per_cpu_in_seconds_and_never_goes_back():
    """/proc/stat's steal column, summed over the CPUs asked for: cumulative seconds (so a
    later reading is never smaller), 0 for CPUs the machine does not have."""
    from bench.system.sampler import steal_s
    cpus = sorted(os.sched_getaffinity(0))
    first = steal_s(cpus)
    time.sleep(0.05)
    assert 0.0 <= first <= steal_s(cpus)
    assert steal_s([10_000]) == 0.0
    uptime_s = float(open("/proc/uptime").read().split()[0])
    assert steal_s(cpus) <= uptime_s * len(cpus)
