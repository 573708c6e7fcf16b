"""What an open-loop generator process records: histograms, not sample lists.

Memory is fixed by the number of request names, not by the run's length: per name a total
histogram of latency from the intended send time and the current one-second interval, which is written to the interval log and reset
when the second ends. Times are in ns on ``time.perf_counter_ns``'s clock; histograms in µs.
No Locust and no gevent here: the locustfile feeds ``record`` from Locust's request event.

Every scheduled request of the measured window counts. One that never got an answer -- an
arrival *dropped* because the in-flight limit was reached, or one still *unfinished* when
the drain ended -- enters its name's latency histogram (and the interval log) at ``finish``
as a *censored* value: the drain's end minus its intended send time, a lower bound of a
latency it never had (clamped to the histogram's ceiling, which then reads "at least 60 s").
They land in the interval the drain ended in; how many there are is counted per name
(``censored`` = ``dropped`` + ``unfinished`` in the result, and per second in the time
series). Memory stays fixed: the requests in flight are bounded by the pool, and dropped
arrivals are kept as one histogram per name of how long before the schedule's end they were
due.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from hdrh.histogram import HdrHistogram

from bench.results.hdr import HIGHEST_US, IntervalLogWriter, clear, encode, new_histogram

NS_PER_US = 1000
INTERVAL_NS = 1_000_000_000


@dataclass
class NameStats:
    latency: HdrHistogram = field(default_factory=new_histogram)  # from intended send, µs
    interval: HdrHistogram = field(default_factory=new_histogram)
    interval_ok: int = 0
    interval_errors: int = 0
    ok: int = 0
    errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    out_of_range: int = 0
    dropped: int = 0  # arrivals never sent: the in-flight limit was reached
    unfinished: int = 0  # sent, but unanswered when the drain ended
    interval_censored: int = 0
    # dropped arrivals, as µs between their intended time and the recorder's reference
    # (the schedule's end): censored at ``finish`` without keeping one entry per arrival
    dropped_before_end: HdrHistogram = field(default_factory=new_histogram)

    @property
    def censored(self) -> int:
        """Values in ``latency`` that are lower bounds, not measurements."""
        return self.dropped + self.unfinished


class Recorder:
    """Records one generator process's measured window.

    ``start_ns`` is the schedule's time zero; requests *intended* before
    ``start_ns + warmup_ns`` are counted as warm-up and otherwise ignored. Completions after
    ``end_ns + grace_ns`` (the schedule's end plus a grace) are recorded but not counted as
    completed in time.

    A generator calls ``admitted`` when it hands a request to its pool (or ``dropped`` when
    the pool is full), ``sending`` when the request actually goes out, ``record`` from the
    request event, ``settled`` when the send returned or raised, and ``finish`` when the
    drain ends: whatever is still in flight then, and every dropped arrival, is censored.
    Once ``admitted`` has been called, a completion must match a request in flight; one
    that does not is counted as ``unmatched`` and not recorded (it would be counted twice)."""

    def __init__(self, start_ns: int, start_epoch_s: float, warmup_ns: int, log: TextIO,
                 comment: str = "", end_ns: int | None = None, grace_ns: int = 500_000_000,
                 reference: Iterable[str] = (), reference_log: TextIO | None = None,
                 observed_log: TextIO | None = None) -> None:
        self.start_ns = start_ns
        self.start_epoch_s = start_epoch_s
        self.measure_from_ns = start_ns + warmup_ns
        # completions later than this are counted apart: a server that falls behind the
        # schedule still finishes everything eventually, but not at the scheduled rate
        self.in_time_until_ns = None if end_ns is None else end_ns + grace_ns
        self.completed_in_time = 0
        self.names: dict[str, NameStats] = {}
        self.lateness = new_histogram()  # actual send - intended send, µs
        # every measured request of the system (reference names left out) by the half of the
        # window its intended send fell in: a latency that grows from one to the other is a
        # queue building up, not a steady state (``bench.load.generator.steadiness``)
        self.halves = (new_histogram(), new_histogram())
        self.warmup_requests = 0
        self.scheduled = 0
        self.sent = 0
        self.timeseries: list[dict[str, Any]] = []
        self._log = IntervalLogWriter(log, start_epoch_s, comment)
        # the names of ``reference`` are written to a log of their own (LoadPlan.reference)
        self._reference = frozenset(reference)
        self._reference_log = (IntervalLogWriter(reference_log, start_epoch_s, comment)
                               if reference_log is not None else self._log)
        # values a scenario read from its answers (``observe``), by name: interval histograms
        # to a log of their own, so they count toward no request figure
        self._observed: dict[str, HdrHistogram] = {}
        self._observed_log = (IntervalLogWriter(observed_log, start_epoch_s, comment)
                              if observed_log is not None else None)
        self._interval = 0  # index of the open one-second interval, counted from start_ns
        self._end_ns = end_ns
        self._in_flight: Counter[tuple[str, int]] = Counter()  # (name, intended ns), measured
        self._tracking = False  # whether requests are admitted before they complete
        self._dropped_exact: list[tuple[str, int]] = []  # only without end_ns, or past it
        self._finished = False
        self.unmatched = 0

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
        """An arrival that found the in-flight limit reached and was never sent; censored at
        ``finish``."""
        if not self.measured(intended_ns) or self._finished:
            return
        stats = self._stats(name)
        stats.dropped += 1
        if self._end_ns is not None and intended_ns <= self._end_ns:
            before_end_us = min(HIGHEST_US, max(1, (self._end_ns - intended_ns) // NS_PER_US))
            stats.dropped_before_end.record_value(before_end_us)
        else:
            self._dropped_exact.append((name, intended_ns))

    def admitted(self, name: str, intended_ns: int) -> None:
        """A request handed to the pool: in flight until ``record`` (or censored at ``finish``)."""
        self._tracking = True
        if self.measured(intended_ns) and not self._finished:
            self._in_flight[(name, intended_ns)] += 1

    def in_flight(self) -> int:
        """Measured requests admitted and not yet recorded."""
        return sum(self._in_flight.values())

    def settled(self, name: str, intended_ns: int, now_ns: int) -> None:
        """The send of an admitted request returned or raised. If no completion was recorded
        for it (the client raised before firing its request event), it failed: recorded as
        an error with status 0 now, rather than censored at the drain's end."""
        if self._in_flight.get((name, intended_ns)):
            self.record(name, intended_ns, now_ns, False, 0)

    def sending(self, intended_ns: int, now_ns: int) -> None:
        if self.measured(intended_ns):
            self.sent += 1
            self.lateness.record_value(max(1, (now_ns - intended_ns) // NS_PER_US))

    def record(self, name: str, intended_ns: int, done_ns: int, ok: bool, status: int) -> None:
        """One completed request (successful or not)."""
        if not self.measured(intended_ns):
            self.warmup_requests += 1
            return
        if self._finished:  # censored already (the drain ended before it did)
            return
        if self._tracking:
            key = (name, intended_ns)
            if not self._in_flight.get(key):
                self.unmatched += 1
                return
            self._in_flight[key] -= 1
            if not self._in_flight[key]:
                del self._in_flight[key]
        self.rotate(done_ns)
        if self.in_time_until_ns is None or done_ns <= self.in_time_until_ns:
            self.completed_in_time += 1
        stats = self._stats(name)
        latency_us = max(1, (done_ns - intended_ns) // NS_PER_US)
        self._halve(name, intended_ns, latency_us)
        stats.interval.record_value(latency_us)
        if not stats.latency.record_value(latency_us):
            stats.out_of_range += 1
        stats.statuses[str(status)] += 1
        if ok:
            stats.ok += 1
            stats.interval_ok += 1
        else:
            stats.errors += 1
            stats.interval_errors += 1

    def observe(self, name: str, intended_ns: int, values_us: Iterable[int]) -> None:
        """Values (µs) a measured request's answer reported about itself (timings of
        its own parts, say), under ``name``; ignored in the warm-up, after ``finish`` or
        without an observations log."""
        if self._observed_log is None or self._finished or not self.measured(intended_ns):
            return
        histogram = self._observed.get(name)
        if histogram is None:
            histogram = self._observed[name] = new_histogram()
        for value in values_us:
            histogram.record_value(min(HIGHEST_US, max(1, int(value))))

    def _halve(self, name: str, intended_ns: int, latency_us: int, count: int = 1) -> None:
        if self._end_ns is None or name in self._reference:
            return
        second = 2 * intended_ns >= self.measure_from_ns + self._end_ns
        self.halves[second].record_value(min(HIGHEST_US, latency_us), count)

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
            log = self._reference_log if name in self._reference else self._log
            log.write(tag_of(name), start_s, 1.0, stats.interval)
            # counts only: the percentiles are in the interval log, and reading them here
            # (1.2 ms each in pure Python) would delay the next sends
            self.timeseries.append({
                "second": self._interval, "name": name,
                "completed": count - stats.interval_censored, "censored": stats.interval_censored,
                "ok": stats.interval_ok, "errors": stats.interval_errors})
            clear(stats.interval)
            stats.interval_ok = stats.interval_errors = stats.interval_censored = 0
        for name, histogram in self._observed.items():
            if histogram.get_total_count():
                self._observed_log.write(tag_of(name), start_s, 1.0, histogram)
                clear(histogram)

    def finish(self, now_ns: int) -> None:
        """The drain ended at ``now_ns``: censor what never got an answer, close the log.
        Completions recorded after this are ignored (their requests were censored)."""
        if self._finished:
            return
        self.rotate(now_ns)
        self._censor(now_ns)
        self._flush_interval()
        self._finished = True

    def _censor(self, drain_end_ns: int) -> None:
        """Record every unanswered request as (drain end - intended), clamped to the
        histograms' range."""

        def add(name: str, value_us: int, count: int, intended_ns: int) -> None:
            value_us = min(HIGHEST_US, max(1, value_us))
            self._halve(name, intended_ns, value_us, count)
            stats = self._stats(name)
            stats.latency.record_value(value_us, count)
            stats.interval.record_value(value_us, count)
            stats.interval_censored += count

        for (name, intended_ns), count in self._in_flight.items():
            self._stats(name).unfinished += count
            add(name, (drain_end_ns - intended_ns) // NS_PER_US, count, intended_ns)
        self._in_flight.clear()
        if self._end_ns is not None:
            after_end_us = (drain_end_ns - self._end_ns) // NS_PER_US
            for name, stats in list(self.names.items()):
                dropped = stats.dropped_before_end
                if not dropped.get_total_count():
                    continue
                for item in dropped.get_recorded_iterator():
                    # the bucket's lowest value: a censored value stays a lower bound
                    before_end_us = dropped.get_lowest_equivalent_value(item.value_iterated_to)
                    add(name, after_end_us + before_end_us, item.count_at_value_iterated_to,
                        self._end_ns - before_end_us * NS_PER_US)
                dropped.reset()
        for name, intended_ns in self._dropped_exact:
            add(name, (drain_end_ns - intended_ns) // NS_PER_US, 1, intended_ns)
        self._dropped_exact.clear()

    def result(self, **extra: Any) -> dict[str, Any]:
        """The process's result document (JSON-ready); ``extra`` is merged in."""
        names = {name: {"ok": s.ok, "errors": s.errors, "dropped": s.dropped,
                        "unfinished": s.unfinished, "censored": s.censored,
                        "out_of_range": s.out_of_range, "statuses": dict(s.statuses),
                        "latency_histogram": encode(s.latency)}
                 for name, s in self.names.items()}
        return {"start_epoch_s": self.start_epoch_s, "scheduled": self.scheduled,
                "completed_in_time": self.completed_in_time,
                "sent": self.sent, "warmup_requests": self.warmup_requests,
                "censored": sum(s.censored for s in self.names.values()),
                "unmatched": self.unmatched,
                "lateness_histogram": encode(self.lateness), "names": names,
                "halves": [encode(h) for h in self.halves],
                "timeseries": self.timeseries, **extra}


def tag_of(name: str) -> str:
    """A request name as an interval-log tag (no commas or spaces)."""
    return name.replace(" ", "_").replace(",", ";")

