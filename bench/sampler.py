"""Resource sampling: CPU time and RSS of every process of a group, while load runs.

A group is a set of root pids (a topology's gunicorn masters, or the load generators); each
sample covers the roots and all their descendants, so gunicorn workers are counted. CPU is
psutil's cumulative user+system seconds; the CPU a window used is the difference between
the samples bracketing it. RSS is in bytes, summed over a group's processes.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Sample:
    t_epoch_s: float
    group: str
    pid: int
    name: str
    cpu_s: float  # cumulative user + system CPU seconds of this process
    rss_bytes: int


class ResourceSampler:
    """Samples the groups every ``period_s`` on a daemon thread between ``start`` and ``stop``."""

    def __init__(self, groups: Mapping[str, Iterable[int]], period_s: float = 0.25) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self.period_s = period_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)
        self._procs: dict[int, psutil.Process] = {}  # cached, so cpu_times stay per process

    def start(self) -> "ResourceSampler":
        self.sample_once()
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sample_once()
        return self.samples

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample_once()

    def _process(self, pid: int) -> psutil.Process:
        if pid not in self._procs:
            self._procs[pid] = psutil.Process(pid)
        return self._procs[pid]

    def sample_once(self) -> None:
        now = time.time()
        for group, roots in self.groups.items():
            for proc in self._members(roots):
                try:
                    with proc.oneshot():
                        cpu = proc.cpu_times()
                        rss = proc.memory_info().rss
                        name = proc.name()
                except psutil.Error:  # gone, or not ours to read
                    continue
                self.samples.append(Sample(now, group, proc.pid, name,
                                           cpu.user + cpu.system, rss))

    def _members(self, roots: list[int]) -> list[psutil.Process]:
        members: list[psutil.Process] = []
        for pid in roots:
            try:
                root = self._process(pid)
                members.append(root)
                members.extend(self._process(child.pid) for child in root.children(recursive=True))
            except psutil.Error:  # a sampler that dies silently would leave stale CPU figures
                continue
        return members


@dataclass(frozen=True)
class WindowUsage:
    """What a group used in a time window."""

    cpu_s: float  # CPU seconds, all of the group's processes
    wall_s: float
    rss_bytes_max: int  # the largest summed RSS seen at one sampling instant
    processes: int

    @property
    def cpu_utilisation(self) -> float:
        """Cores' worth of CPU (1.0 = one core busy all the window)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def window_usage(samples: Iterable[Sample], group: str, start_s: float, end_s: float) -> WindowUsage:
    """CPU and RSS of ``group`` in [start_s, end_s] (epoch seconds), from its samples.

    Per process, CPU is the last sample at or before the end minus the last at or before
    the start (zero for a process first seen inside the window counts from its first
    sample), so the window is measured to within one sampling period at each edge."""
    per_pid: dict[int, list[Sample]] = {}
    for s in samples:
        if s.group == group:
            per_pid.setdefault(s.pid, []).append(s)
    cpu = 0.0
    rss_at: dict[float, int] = {}
    for series in per_pid.values():
        series.sort(key=lambda s: s.t_epoch_s)
        before = [s for s in series if s.t_epoch_s <= start_s]
        inside = [s for s in series if start_s <= s.t_epoch_s <= end_s]
        until_end = [s for s in series if s.t_epoch_s <= end_s]
        if not until_end:
            continue
        first = before[-1] if before else until_end[0]
        cpu += until_end[-1].cpu_s - first.cpu_s
        for s in inside:
            rss_at[s.t_epoch_s] = rss_at.get(s.t_epoch_s, 0) + s.rss_bytes
    return WindowUsage(cpu, end_s - start_s, max(rss_at.values(), default=0), len(per_pid))
