"""What an open-loop generator process records: histograms, not sample lists.

Memory is fixed by the number of request names, not by the run's length: per name a total
histogram of latency from the intended send time, one of service time (from the actual
send), and the current one-second interval, which is written to the interval log and reset
when the second ends. Times are in ns on ``time.perf_counter_ns``'s clock; histograms in µs.
No Locust and no gevent here: the locustfile feeds ``record`` from Locust's request event.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from hdrh.histogram import HdrHistogram

from bench.hdr import IntervalLogWriter, encode, new_histogram

NS_PER_US = 1000
INTERVAL_NS = 1_000_000_000


@dataclass
class NameStats:
    latency: HdrHistogram = field(default_factory=new_histogram)  # from intended send, µs
    service: HdrHistogram = field(default_factory=new_histogram)  # from actual send, µs
    interval: HdrHistogram = field(default_factory=new_histogram)
    interval_ok: int = 0
    interval_errors: int = 0
    ok: int = 0
    errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    out_of_range: int = 0
    dropped: int = 0


class Recorder:
    """Records one generator process's measured window.

    ``start_ns`` is the schedule's time zero; requests *intended* before
    ``start_ns + warmup_ns`` are counted as warm-up and otherwise ignored. Completions after
    ``end_ns + grace_ns`` (the schedule's end plus a grace) are recorded but not counted as
    completed in time."""

    def __init__(self, start_ns: int, start_epoch_s: float, warmup_ns: int, log: TextIO,
                 comment: str = "", end_ns: int | None = None, grace_ns: int = 500_000_000) -> None:
        self.start_ns = start_ns
        self.start_epoch_s = start_epoch_s
        self.measure_from_ns = start_ns + warmup_ns
        # completions later than this are counted apart: a server that falls behind the
        # schedule still finishes everything eventually, but not at the scheduled rate
        self.in_time_until_ns = None if end_ns is None else end_ns + grace_ns
        self.completed_in_time = 0
        self.names: dict[str, NameStats] = {}
        self.lateness = new_histogram()  # actual send - intended send, µs
        self.warmup_requests = 0
        self.scheduled = 0
        self.sent = 0
        self.timeseries: list[dict[str, Any]] = []
        self._log = IntervalLogWriter(log, start_epoch_s, comment)
        self._interval = 0  # index of the open one-second interval, counted from start_ns

    def _stats(self, name: str) -> NameStats:
        if name not in self.names:
            self.names[name] = NameStats()
        return self.names[name]

    def measured(self, intended_ns: int) -> bool:
        return intended_ns >= self.measure_from_ns

    def scheduled_one(self, intended_ns: int) -> None:
        if self.measured(intended_ns):
            self.scheduled += 1

    def dropped(self, name: str, intended_ns: int) -> None:
        """An arrival that found the in-flight limit reached and was never sent."""
        if self.measured(intended_ns):
            self._stats(name).dropped += 1

    def sending(self, intended_ns: int, now_ns: int) -> None:
        if self.measured(intended_ns):
            self.sent += 1
            self.lateness.record_value(max(1, (now_ns - intended_ns) // NS_PER_US))

    def record(self, name: str, intended_ns: int, done_ns: int, service_us: float,
               ok: bool, status: int) -> None:
        """One completed request (successful or not)."""
        if not self.measured(intended_ns):
            self.warmup_requests += 1
            return
        self.rotate(done_ns)
        if self.in_time_until_ns is None or done_ns <= self.in_time_until_ns:
            self.completed_in_time += 1
        stats = self._stats(name)
        latency_us = max(1, (done_ns - intended_ns) // NS_PER_US)
        in_range = stats.latency.record_value(latency_us)
        in_range = stats.service.record_value(max(1, round(service_us))) and in_range
        stats.interval.record_value(latency_us)
        if not in_range:
            stats.out_of_range += 1
        stats.statuses[str(status)] += 1
        if ok:
            stats.ok += 1
            stats.interval_ok += 1
        else:
            stats.errors += 1
            stats.interval_errors += 1

    def rotate(self, now_ns: int) -> None:
        """Close the open interval(s) if ``now_ns`` is past them."""
        current = (now_ns - self.start_ns) // INTERVAL_NS
        while self._interval < current:
            self._flush_interval()
            self._interval += 1

    def _flush_interval(self) -> None:
        start_s = float(self._interval)
        for name, stats in self.names.items():
            count = stats.interval.get_total_count()
            if count == 0 and stats.interval_errors == 0:
                continue
            self._log.write(tag_of(name), start_s, 1.0, stats.interval)
            self.timeseries.append({
                "second": self._interval, "name": name, "completed": count,
                "ok": stats.interval_ok, "errors": stats.interval_errors,
                "p50_us": stats.interval.get_value_at_percentile(50),
                "p99_us": stats.interval.get_value_at_percentile(99),
                "max_us": stats.interval.get_max_value()})
            stats.interval.reset()
            stats.interval_ok = stats.interval_errors = 0

    def finish(self, now_ns: int) -> None:
        self.rotate(now_ns)
        self._flush_interval()

    def result(self, **extra: Any) -> dict[str, Any]:
        """The process's result document (JSON-ready); ``extra`` is merged in."""
        names = {name: {"ok": s.ok, "errors": s.errors, "dropped": s.dropped,
                        "out_of_range": s.out_of_range, "statuses": dict(s.statuses),
                        "latency_histogram": encode(s.latency),
                        "service_histogram": encode(s.service)}
                 for name, s in self.names.items()}
        return {"start_epoch_s": self.start_epoch_s, "scheduled": self.scheduled,
                "completed_in_time": self.completed_in_time,
                "sent": self.sent, "warmup_requests": self.warmup_requests,
                "lateness_histogram": encode(self.lateness), "names": names,
                "timeseries": self.timeseries, **extra}


def tag_of(name: str) -> str:
    """A request name as an interval-log tag (no commas or spaces)."""
    return name.replace(" ", "_").replace(",", ";")

