"""Resource sampling: CPU time and memory (PSS) of every process of a group, while load runs.

A group is a set of root pids (a topology's gunicorn masters, or the load generators); a group's
members are the roots and all their descendants, so gunicorn workers are counted.

* **CPU** is each process's thread-group CPU clock (``clock_getcpuclockid``: the scheduler's
  ``sum_exec_runtime``, user + system, in **nanoseconds**, including threads that have
  exited); a process found after the start gets a zero reading at its birth, so all of its
  CPU is counted.
* **Memory** is ``/proc/<pid>/smaps_rollup``: RSS, **PSS** (shared pages divided among the
  processes that map them) and USS; PSS is the headline. Each process's memory is read about
  every ``memory_period_s``, in turn, and every process at start and stop.
* **Membership** is cached and refreshed from ``/proc/<pid>/task/<tid>/children``.

Every reading is taken on the sampler's own thread, pinned off the load generator's CPUs
(``cpus``), so sampling never makes a send late. Why these sources and not psutil's, what each
costs and how exact it is: docs/methodology.md, "How resources are sampled".
"""
from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_CPUCLOCK_SCHED = 2  # linux/posix-timers.h: a process clock of sum_exec_runtime, in ns
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_CHILDREN_FILES = os.path.exists("/proc/thread-self/children")  # CONFIG_PROC_CHILDREN
YOUNG_S = 3.0  # a process younger than this (a load generator just started) ...
YOUNG_MEMORY_PERIOD_S = 0.5  # ... has its memory read this often: it is still growing


def process_cpu_clock(pid: int) -> int:
    """The clock id of ``pid``'s thread-group CPU clock (what glibc's ``clock_getcpuclockid``
    returns): ``time.clock_gettime_ns`` on it gives the CPU ns all its threads, living and
    exited, have used."""
    return ((~pid) << 3) | _CPUCLOCK_SCHED


def process_cpu_ns(pid: int) -> int:
    """Cumulative user + system CPU of process ``pid``, ns. ``OSError`` once it is reaped."""
    return time.clock_gettime_ns(process_cpu_clock(pid))


@dataclass(frozen=True)
class MemoryReading:
    """One process's memory, bytes (from ``/proc/<pid>/smaps_rollup``)."""

    rss_bytes: int  # resident pages, shared ones counted in full in every process mapping them
    pss_bytes: int  # proportional: each resident page divided by the number of processes mapping it
    uss_bytes: int  # private (mapped by this process only): what its exit would free


def read_memory(pid: int) -> MemoryReading:
    """RSS, PSS and USS of ``pid`` from ``smaps_rollup`` (``OSError`` if gone or a zombie)."""
    fields: dict[str, int] = {}
    for line in _read(f"/proc/{pid}/smaps_rollup").splitlines()[1:]:
        key, _, rest = line.partition(b":")
        parts = rest.split()
        if parts:
            fields[key.decode()] = int(parts[0]) * 1024  # kB
    if "Pss" not in fields:  # a zombie's or kernel thread's rollup is empty
        raise ProcessLookupError(f"no memory map for pid {pid}")
    uss = sum(fields.get(k, 0) for k in ("Private_Clean", "Private_Dirty", "Private_Hugetlb"))
    return MemoryReading(fields.get("Rss", 0), fields["Pss"], uss)


def _start_epoch_s(pid: int) -> float:
    """When ``pid`` was born, epoch seconds (to the 10 ms of ``/proc/<pid>/stat``)."""
    stat = _read(f"/proc/{pid}/stat")
    start_ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
    since_birth = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / _CLK_TCK
    return time.time() - since_birth


def _read_children(pid: int, every_thread: bool) -> list[int]:
    """Direct children of ``pid`` (of its main thread only, unless ``every_thread``)."""
    if not _CHILDREN_FILES:
        import psutil  # a kernel without CONFIG_PROC_CHILDREN: scan /proc (slow, correct)
        try:
            return [c.pid for c in psutil.Process(pid).children()]
        except psutil.Error:
            raise ProcessLookupError(pid) from None
    tids = os.listdir(f"/proc/{pid}/task") if every_thread else [str(pid)]
    children: list[int] = []
    for tid in tids:
        try:
            children.extend(map(int, _read(f"/proc/{pid}/task/{tid}/children").split()))
        except FileNotFoundError:
            if tid == str(pid):
                raise
    return children


def steal_s(cpus: Iterable[int]) -> float:
    """CPU seconds the hypervisor has taken from ``cpus`` since boot (``/proc/stat``'s steal
    column: time a virtual CPU had work but the host ran something else); 0.0 where the
    kernel does not say. Read before and after a step, it tells a stall of the machine from
    one of the system or the generator."""
    wanted = {f"cpu{c}" for c in cpus}
    try:
        lines = _read("/proc/stat").decode().splitlines()
    except OSError:
        return 0.0
    ticks = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted and len(fields) > 8:
            ticks += int(fields[8])
    return ticks / _CLK_TCK


def _read(path: str) -> bytes:
    """A small /proc file, unbuffered (half the cost of ``open``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, 65536)]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().decode(errors="replace").strip()
    except OSError:
        return "?"


@dataclass(frozen=True)
class Sample:
    """One process at one pass. Memory fields carry the process's latest memory reading (taken
    at ``memory_epoch_s``, at most about ``memory_period_s`` earlier); ``None`` before its first."""

    t_epoch_s: float
    group: str
    pid: int
    name: str
    cpu_s: float  # cumulative user + system CPU seconds of the process (ns clock, all threads)
    rss_bytes: int | None = None  # resident set, bytes; shared pages in full
    pss_bytes: int | None = None  # proportional set, bytes; shared pages divided among sharers
    uss_bytes: int | None = None  # unique (private) set, bytes
    memory_epoch_s: float | None = None  # when the memory fields were read


@dataclass(eq=False)
class _Member:
    pid: int
    name: str
    born_epoch_s: float
    memory: MemoryReading | None = None
    memory_epoch_s: float | None = None
    memory_tried: bool = False  # read at least once (a zombie's memory never reads)


class ResourceSampler:
    """Samples the groups on a daemon thread between ``start`` and ``stop``.

    Every ``period_s`` it reads every member's CPU clock. Memory is read for every member at
    start and stop, for a new member when it is found, and otherwise in turn, one or a few
    processes in some passes, so that each is read about every ``memory_period_s`` (``None``: no
    memory reads between start and stop). Reading one process at a time keeps each pass short
    (~0.2 ms) for whatever shares the sampler's CPU.

    ``cpus`` are the CPUs the sampling thread may run on; ``None`` means every CPU the creating
    thread is not pinned to (none: it is left where it is). Nothing is read on the creating
    thread: ``start`` returns after the thread's first pass, ``stop`` after its last.
    ``errors`` lists what went wrong (a sampler that failed silently would leave stale figures)."""

    def __init__(self, groups: Mapping[str, Iterable[int]], period_s: float = 0.25,
                 memory_period_s: float | None = 5.0, cpus: Iterable[int] | None = None) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self.period_s = period_s
        self.memory_period_s = memory_period_s
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self.cpus: set[int] | None = set(cpus) if cpus is not None else _away_from_caller()
        self.native_id: int | None = None  # the sampling thread's tid, once started
        self._members: dict[str, dict[int, _Member]] = {name: {} for name in self.groups}
        self._member_gone = False
        self._memory_credit = 0.0
        self._memory_turn = 0
        self._tick_fallback = False
        self._started_epoch_s = time.time()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)

    def start(self) -> "ResourceSampler":
        self._started_epoch_s = time.time()
        self._thread.start()
        self._ready.wait()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.samples

    def _run(self) -> None:
        try:
            self.native_id = threading.get_native_id()
            if self.cpus:
                try:
                    os.sched_setaffinity(self.native_id, self.cpus)
                except (OSError, ValueError) as e:
                    self.errors.append(f"could not pin the sampler to CPU {sorted(self.cpus)}: {e}")
            self._safe_pass(all_memory=True)
        finally:
            self._ready.set()  # start() never waits for ever
        # every thread's children are read about as often as a process's memory
        every = max(1, round((self.memory_period_s or 5.0) / self.period_s))
        n = 0
        while not self._stop.wait(self.period_s):
            n += 1
            self._safe_pass(all_memory=False, every_thread=n % every == 0)
        self._safe_pass(all_memory=True)

    def _safe_pass(self, all_memory: bool, every_thread: bool = True) -> None:
        try:
            self.sample_once(all_memory, every_thread)
        except Exception as e:  # keep sampling; say what went wrong
            self.errors.append(f"{type(e).__name__}: {e}")

    def sample_once(self, all_memory: bool = True, every_thread: bool = True) -> None:
        """One pass: find new members, read every member's CPU clock, and the memory of all
        (``all_memory``) or of the next few in turn. Meant for the sampling thread; callable
        directly (tests, cost figures)."""
        self._refresh(every_thread=every_thread or self._member_gone)
        now = time.time()
        readings: list[tuple[str, int, _Member, int]] = []
        for group, members in self._members.items():
            for pid, member in list(members.items()):
                try:
                    readings.append((group, pid, member, self._cpu_ns(pid)))
                except OSError:  # reaped: its CPU since the last reading is lost
                    del members[pid]
                    self._member_gone = True
        for member in self._memory_due([m for _, _, m, _ in readings], all_memory):
            member.memory_tried = True
            try:
                member.memory = read_memory(member.pid)
                member.memory_epoch_s = time.time()
            except OSError:  # a zombie, or gone since its CPU was read
                pass
        for group, pid, member, cpu_ns in readings:
            mem = member.memory
            self.samples.append(Sample(now, group, pid, member.name, cpu_ns / 1e9,
                                       *((mem.rss_bytes, mem.pss_bytes, mem.uss_bytes)
                                         if mem else (None, None, None)),
                                       member.memory_epoch_s))

    def _memory_due(self, members: list[_Member], all_memory: bool) -> list[_Member]:
        """Whose memory to read this pass: all; or those never read, the young ones not read
        for ``YOUNG_MEMORY_PERIOD_S`` (a generator that lives a few seconds, still growing),
        and the next of the others in turn."""
        if all_memory:
            return members
        now = time.time()
        due = [m for m in members if not m.memory_tried
               or (now - m.born_epoch_s < YOUNG_S and m.memory_epoch_s is not None
                   and now - m.memory_epoch_s >= YOUNG_MEMORY_PERIOD_S)]
        if not members or not self.memory_period_s:
            return due
        self._memory_credit += len(members) * self.period_s / self.memory_period_s
        n = min(len(members), int(self._memory_credit))
        self._memory_credit -= n
        for _ in range(n):
            self._memory_turn %= len(members)
            member = members[self._memory_turn]
            self._memory_turn += 1
            if member not in due:
                due.append(member)
        return due

    def _refresh(self, every_thread: bool) -> None:
        """Add descendants not yet known: the roots and every known member are searched (the
        children of their main thread, or of ``every_thread``); members gone are dropped."""
        first = not any(self._members.values())
        for group, roots in self.groups.items():
            members = self._members[group]
            queue = list(dict.fromkeys([*roots, *members]))
            seen = set(queue)
            while queue:
                pid = queue.pop()
                try:
                    children = _read_children(pid, every_thread or pid not in members)
                except OSError:
                    members.pop(pid, None)
                    continue
                if pid not in members:
                    self._add(group, pid, newborn=not first and pid not in roots)
                for child in children:
                    if child not in seen:
                        seen.add(child)
                        queue.append(child)
        self._member_gone = False

    def _add(self, group: str, pid: int, newborn: bool) -> None:
        try:
            born = _start_epoch_s(pid)
        except OSError:
            return  # gone already
        self._members[group][pid] = member = _Member(pid, _name(pid), born)
        if newborn and born > self._started_epoch_s:  # all its CPU is since birth: from zero
            self.samples.append(Sample(born, group, pid, member.name, 0.0))

    def _cpu_ns(self, pid: int) -> int:
        """``pid``'s CPU clock; 10 ms ticks from ``/proc/<pid>/stat`` if that clock cannot be
        read though the process is there (said once in ``errors``). ``OSError``: gone."""
        try:
            return process_cpu_ns(pid)
        except OSError:
            stat = _read(f"/proc/{pid}/stat")  # raises once it is gone
            fields = stat[stat.rindex(b")") + 2:].split()
            if not self._tick_fallback:
                self._tick_fallback = True
                self.errors.append(f"the CPU clock of pid {pid} could not be read: "
                                   "CPU from 10 ms ticks of /proc/<pid>/stat")
            return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // _CLK_TCK


def _away_from_caller() -> set[int] | None:
    """Every CPU the calling thread is not pinned to (``None`` if it may use them all)."""
    mine = os.sched_getaffinity(0)
    others = set(range(os.cpu_count() or 1)) - mine
    return others or None


@dataclass(frozen=True)
class WindowUsage:
    """What a group used in a time window.

    Memory maxima are of the group's sum at one pass (each process's latest reading, at most
    about ``memory_period_s`` old): the largest over the passes in the window, or, when none
    falls inside it, the first pass after it (else the last before it). Bytes."""

    cpu_s: float  # CPU seconds, all of the group's processes (ns clock, interpolated at the edges)
    wall_s: float  # seconds
    rss_bytes_max: int  # summed RSS, bytes: pages shared between processes count once per process
    processes: int  # processes of the group alive at some time in the window
    # summed PSS, bytes: shared pages count once (the headline memory); None when the group's
    # readings had none (servers read from /metrics: bench/system/scrape.py)
    pss_bytes_max: int | None = 0
    uss_bytes_max: int = 0  # summed USS, bytes: private pages only
    memory_at_s: float | None = None  # epoch seconds of the pass the PSS maximum comes from

    @property
    def cpu_utilisation(self) -> float:
        """Cores' worth of CPU (1.0 = one core busy all the window)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def _cpu_at(series: list[Sample], times: list[float], t: float) -> float:
    """A process's cumulative CPU at ``t``, linear between its readings; before its first
    reading it is the first (a process born after the sampler started has a zero reading at
    birth), after its last (exited) the last."""
    i = bisect.bisect_right(times, t)
    if i == 0:
        return series[0].cpu_s
    if i == len(series):
        return series[-1].cpu_s
    a, b = series[i - 1], series[i]
    span = b.t_epoch_s - a.t_epoch_s
    return a.cpu_s + (b.cpu_s - a.cpu_s) * ((t - a.t_epoch_s) / span if span > 0 else 1.0)


def window_usage(samples: Iterable[Sample], group: str, start_s: float, end_s: float) -> WindowUsage:
    """CPU and memory of ``group`` in [start_s, end_s] (epoch seconds), from its samples.

    Per process, CPU is its cumulative CPU interpolated linearly at the end minus at the start,
    so an edge between two readings is placed in proportion (exact under steady load; under
    a load change at the edge, wrong by at most the CPU of one ``period_s``)."""
    per_pid: dict[int, list[Sample]] = {}
    for s in samples:
        if s.group == group:
            per_pid.setdefault(s.pid, []).append(s)
    cpu = 0.0
    processes = 0
    memory: dict[float, list[int]] = {}  # instant -> [rss, pss, uss] summed
    has_pss = False
    for series in per_pid.values():
        series.sort(key=lambda s: s.t_epoch_s)
        times = [s.t_epoch_s for s in series]
        if times[0] > end_s or times[-1] < start_s:
            continue
        processes += 1
        cpu += _cpu_at(series, times, end_s) - _cpu_at(series, times, start_s)
    for series in per_pid.values():
        for s in series:
            if s.rss_bytes is not None:
                total = memory.setdefault(s.t_epoch_s, [0, 0, 0])
                total[0] += s.rss_bytes
                total[1] += s.pss_bytes or 0
                has_pss = has_pss or s.pss_bytes is not None
                total[2] += s.uss_bytes or 0
    instants = [t for t in memory if start_s <= t <= end_s]
    if not instants:
        after = [t for t in memory if t > end_s]
        before = [t for t in memory if t < start_s]
        instants = [min(after)] if after else [max(before)] if before else []
    rss = max((memory[t][0] for t in instants), default=0)
    pss_at = max(instants, key=lambda t: memory[t][1], default=None)
    pss = memory[pss_at][1] if pss_at is not None else 0
    uss = max((memory[t][2] for t in instants), default=0)
    return WindowUsage(cpu, end_s - start_s, rss, processes, pss if has_pss or not memory else None,
                       uss, pss_at)
