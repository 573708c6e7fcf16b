"""What a whole server uses, for ``/metrics``: CPU seconds and resident memory of the gunicorn
master and every worker it runs, under Prometheus' standard names.

prometheus_client's own process collector reports the one process that answers a scrape:
with several workers (and in multiprocess mode, where it is not registered at all) that is
a part of the server chosen at random. A harness that cannot see the server's processes
(``seambench run --target``: a deployment on containers or a cluster) needs the server's
whole use from the one URL it can reach, so this collector reads ``/proc`` of the server's
root (the gunicorn master, whose pid the master's ``on_starting`` hook leaves in
``SERVER_PID_ENV`` for the workers it forks) and of its children at every scrape.

* ``process_cpu_seconds_total``: user + system CPU seconds of the root and its live
  children, plus what the root's reaped children used (``cutime``/``cstime``: a worker that
  died still counts). Resolution: one clock tick (10 ms at USER_HZ = 100) per process.
* ``process_resident_memory_bytes``: the summed RSS of the root and its children, bytes
  (shared pages counted in full in each process: PSS cannot be read cheaply enough here).

Linux only; elsewhere the collector yields nothing.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

SERVER_PID_ENV = "SEAMBENCH_SERVER_PID"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class ProcessUsage:
    """One process's use from ``/proc/<pid>/stat``: CPU seconds and resident bytes."""

    cpu_s: float  # its own user + system time
    reaped_cpu_s: float  # what its reaped children used (cutime + cstime)
    rss_bytes: int


def read_usage(pid: int) -> ProcessUsage:
    """``pid``'s use now. OSError when it is gone."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        text = stat.read()
    fields = text[text.rindex(b")") + 2:].split()  # the name may hold spaces and parentheses
    utime, stime, cutime, cstime = (int(fields[i]) for i in range(11, 15))
    return ProcessUsage((utime + stime) / _CLK_TCK, (cutime + cstime) / _CLK_TCK,
                        int(fields[21]) * _PAGE)


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's), from ``/proc``; [] if unreadable."""
    out: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def server_root() -> int:
    """The pid of this server's root: the gunicorn master that started this worker, or this
    process when none said so (an app under a test client)."""
    try:
        return int(os.environ[SERVER_PID_ENV])
    except (KeyError, ValueError):
        return os.getpid()


def server_usage(root: int) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of ``root`` and its live children, with the reaped children's
    CPU; None when ``root`` cannot be read."""
    try:
        top = read_usage(root)
    except OSError:
        return None
    cpu, rss = top.cpu_s + top.reaped_cpu_s, top.rss_bytes
    for child in children_of(root):
        try:
            usage = read_usage(child)
        except OSError:  # exited between the listing and the read: its time is now cutime
            continue
        cpu += usage.cpu_s
        rss += usage.rss_bytes
    return cpu, rss


class ServerUsage:
    """A collector of the server's CPU and memory (the module's docstring says which)."""

    def __init__(self, root: int | None = None) -> None:
        self._root = root

    def describe(self) -> list[Metric]:
        """Its metrics' names, without reading /proc: a registry restricted to them (a scrape
        asking ``?name[]=process_cpu_seconds_total``) then calls this collector alone."""
        return list(self._families(0.0, 0))

    def collect(self) -> Iterator[Metric]:
        usage = server_usage(self._root if self._root is not None else server_root())
        if usage is not None:
            yield from self._families(*usage)

    @staticmethod
    def _families(cpu_s: float, rss: int) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "process_cpu_seconds", "User and system CPU seconds of the whole server (gunicorn "
            "master, live workers, reaped workers); 10 ms ticks per process", value=cpu_s)
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of the whole server (master and "
            "workers), bytes; shared pages counted in each process", value=rss)
