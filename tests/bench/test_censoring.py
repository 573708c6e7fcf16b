"""Every scheduled request counts: dropped and unfinished ones enter the tail as censored values,
and a step whose error rate (errors + censored over scheduled) exceeds the threshold is invalid."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from bench.load.generator import (MAX_ERROR_RATE, TARGET, LoadResult, NameResult, run_load,
                                  target_summary, validity_problems)
from bench.load.plan import LoadPlan
from bench.load.recorder import Recorder, tag_of
from bench.results import hdr
from tests.bench.truth_server import running

S = 1_000_000_000  # ns
MS = 1_000_000


def approx_us(ns: int) -> object:
    return pytest.approx(ns / 1000, rel=0.002)  # 3 significant figures, plus the bucket's edge


def tags(log: str, tmp_path: Path) -> dict[str, list[hdr.Interval]]:
    """An interval log's intervals by tag, read back with the harness's reader."""
    path = tmp_path / "intervals.hlog"
    path.write_text(log)
    out: dict[str, list[hdr.Interval]] = {}
    for iv in hdr.read_interval_log(path):
        out.setdefault(iv.tag, []).append(iv)
    return out


def test_requests_unfinished_at_the_drain_end_are_censored_from_their_intended_time(tmp_path):
    log = io.StringIO()
    r = Recorder(start_ns=0, start_epoch_s=100.0, warmup_ns=0, log=log, end_ns=2 * S)
    r.admitted("a", 1 * S)
    r.admitted("a", 1500 * MS)
    r.admitted("b", 1800 * MS)
    r.record("a", 1 * S, 1100 * MS, ok=True, status=200)
    assert r.in_flight() == 2
    drain_end = 3 * S
    r.finish(drain_end)

    a, b = r.names["a"], r.names["b"]
    assert (a.ok, a.unfinished, a.dropped, a.censored) == (1, 1, 0, 1)
    assert (b.ok, b.unfinished, b.censored) == (0, 1, 1)
    assert a.latency.get_total_count() == 2 and b.latency.get_total_count() == 1
    assert a.latency.get_min_value() == approx_us(100 * MS)  # the measured one
    assert a.latency.get_max_value() == approx_us(drain_end - 1500 * MS)  # the censored one
    assert b.latency.get_max_value() == approx_us(drain_end - 1800 * MS)
    assert r.in_flight() == 0

    doc = r.result(unfinished=2)
    assert doc["censored"] == 2 and doc["unmatched"] == 0
    assert (doc["names"]["a"]["censored"], doc["names"]["a"]["unfinished"]) == (1, 1)
    # the interval log, which analysis reads, holds them too: in the second the drain ended in
    logged = {iv.start_s: iv.histogram for iv in tags(log.getvalue(), tmp_path)[tag_of("a")]}
    assert sorted(logged) == [1.0, drain_end // S]
    assert logged[1.0].get_max_value() == approx_us(100 * MS)
    assert logged[drain_end // S].get_total_count() == 1
    assert logged[drain_end // S].get_max_value() == approx_us(drain_end - 1500 * MS)
    rows = {(row["name"], row["second"]): row for row in r.timeseries}
    assert (rows["a", 1]["completed"], rows["a", 1]["censored"]) == (1, 0)
    assert (rows["a", 3]["completed"], rows["a", 3]["censored"]) == (0, 1)


@pytest.mark.parametrize("end_ns", [2 * S, None], ids=["reflected", "exact"])
def test_dropped_arrivals_are_censored_at_the_drain_end_minus_their_intended_time(end_ns):
    r = Recorder(start_ns=0, start_epoch_s=0.0, warmup_ns=200 * MS, log=io.StringIO(), end_ns=end_ns)
    r.dropped("a", 100 * MS)  # warm-up: not counted
    intended = [500 * MS, 1200 * MS, 1999 * MS]
    for t in intended:
        r.dropped("a", t)
    drain_end = 2700 * MS
    r.finish(drain_end)
    a = r.names["a"]
    assert (a.dropped, a.unfinished, a.censored, a.ok, a.errors) == (3, 0, 3, 0, 0)
    assert a.latency.get_total_count() == 3
    for q, t in zip((1, 50, 100), reversed(intended)):
        assert a.latency.get_value_at_percentile(q) == approx_us(drain_end - t)
    assert a.out_of_range == 0


def test_a_censored_value_past_the_histogram_ceiling_is_clamped_to_it_not_lost():
    r = Recorder(0, 0.0, 0, io.StringIO(), end_ns=100 * S)
    r.dropped("a", 1 * S)
    r.admitted("a", 2 * S)
    r.finish(100 * S)  # 99 s and 98 s: beyond the 60 s ceiling
    a = r.names["a"]
    assert a.latency.get_total_count() == 2 and a.censored == 2
    assert a.latency.get_min_value() == pytest.approx(hdr.HIGHEST_US, rel=0.001)
    assert a.out_of_range == 0


def test_a_completion_after_the_drain_or_unmatched_is_not_counted_twice():
    r = Recorder(0, 0.0, 0, io.StringIO(), end_ns=S)
    r.admitted("a", 100 * MS)
    r.record("a", 200 * MS, 300 * MS, ok=True, status=200)  # never admitted
    assert r.unmatched == 1 and "a" not in r.names
    r.finish(2 * S)
    r.record("a", 100 * MS, 3 * S, ok=True, status=200)  # censored already
    a = r.names["a"]
    assert (a.ok, a.unfinished, a.latency.get_total_count()) == (0, 1, 1)
    assert r.result()["unmatched"] == 1


def test_a_send_that_raised_without_an_event_is_an_error_and_a_recorded_one_is_left_alone():
    r = Recorder(0, 0.0, 0, io.StringIO(), end_ns=S)
    r.admitted("a", 100 * MS)
    r.settled("a", 100 * MS, now_ns=150 * MS)  # no record came: it failed
    r.admitted("a", 200 * MS)
    r.record("a", 200 * MS, 230 * MS, ok=True, status=200)
    r.settled("a", 200 * MS, now_ns=231 * MS)  # already recorded: no-op
    r.finish(2 * S)
    a = r.names["a"]
    assert (a.ok, a.errors, a.censored, dict(a.statuses)) == (1, 1, 0, {"0": 1, "200": 1})
    assert a.latency.get_max_value() == approx_us(50 * MS)


def count_at_least(histogram, value_us: float) -> int:
    return sum(item.count_at_value_iterated_to for item in histogram.get_recorded_iterator()
               if item.value_iterated_to >= value_us)


def load_result(scheduled: int, errors: int = 0, dropped: int = 0, unfinished: int = 0) -> LoadResult:
    plan = LoadPlan(rate_per_s=scheduled, duration_s=1, output_dir="unused")
    name = NameResult(hdr.new_histogram(), ok=scheduled - errors - dropped - unfinished,
                      errors=errors, dropped=dropped, unfinished=unfinished, censored=dropped + unfinished)
    return LoadResult(scenario="target", target="http://127.0.0.1:1", plan=plan, processes=1,
                      names={"GET": name}, lateness=hdr.new_histogram(), scheduled=scheduled,
                      sent=scheduled - dropped, unfinished=unfinished, completed_in_time=scheduled,
                      measure_start_s=0.0, measure_end_s=1.0, generator_cpu=[0.1], timeseries=[],
                      samples=[], interval_logs=[])


def error_rate_reasons(result: LoadResult) -> list[str]:
    return [p for p in validity_problems(result) if p.startswith("error rate")]


def test_the_error_rate_rule_counts_errors_and_censored_values_against_the_threshold():
    scheduled = 2000
    at_limit = round(scheduled * MAX_ERROR_RATE)
    assert not error_rate_reasons(load_result(scheduled, errors=at_limit))
    assert not error_rate_reasons(load_result(scheduled, dropped=at_limit // 2, unfinished=at_limit // 2))
    over = load_result(scheduled, errors=at_limit // 2, dropped=at_limit // 2, unfinished=1)
    (reason,) = error_rate_reasons(over)
    assert over.censored == at_limit // 2 + 1 and over.error_rate > MAX_ERROR_RATE
    assert f"{at_limit // 2} errors" in reason and f"{over.censored} censored" in reason
    assert f"of {scheduled} scheduled" in reason
    summary = target_summary(over)
    assert summary["censored"] == over.censored and summary["error_rate"] > MAX_ERROR_RATE


@pytest.fixture
def stall_server(request):
    answer_first = request.param
    with running(0, 0, hold_after=answer_first) as (_, url):
        yield answer_first, url


RATE, WARMUP_S, DURATION_S, POOL, DRAIN_S = 200, 0.5, 2.5, 10, 0.5
TOTAL = int(RATE * (WARMUP_S + DURATION_S))  # constant arrivals
UNANSWERED = 30  # the last arrivals: more than the pool holds, so some are dropped


@pytest.mark.parametrize("stall_server", [TOTAL - UNANSWERED], indirect=True)
def test_a_stalled_server_puts_censored_values_in_the_tail_and_invalidates_the_step(stall_server, tmp_path):
    """The server stops answering for the last arrivals: POOL of them wait past the drain
    (unfinished), the rest find the pool full (dropped). Each is a censored value of at least
    the drain timeout, so p99 is censored while p50 is the fast path; the step is invalid."""
    _, url = stall_server
    plan = LoadPlan(rate_per_s=RATE, duration_s=DURATION_S, warmup_s=WARMUP_S, arrival="constant",
                    max_in_flight=POOL, connections=POOL, drain_timeout_s=DRAIN_S, output_dir=str(tmp_path))
    result = run_load(TARGET, url, plan)
    get = result.names["GET"]

    assert (get.unfinished, get.dropped) == (POOL, UNANSWERED - POOL)
    assert result.censored == get.censored == UNANSWERED
    assert result.scheduled == result.completed + result.censored  # every scheduled request counted
    assert get.latency.get_total_count() == result.scheduled
    assert get.errors == 0 and result.unmatched == 0

    drain_us = DRAIN_S * 1e6
    assert count_at_least(get.latency, drain_us * 0.999) == UNANSWERED  # each at least the drain
    assert get.latency.get_value_at_percentile(99) >= drain_us * 0.999  # so the tail is censored
    assert get.latency.get_value_at_percentile(50) < drain_us / 10  # the body is the fast path
    # at most: drain plus the stalled stretch of the schedule, plus a generous slack for wake-ups
    assert get.latency.get_max_value() <= (DRAIN_S + UNANSWERED / RATE + 1.0) * 1e6

    assert not result.valid
    assert any(r.startswith("error rate") and f"{UNANSWERED} censored" in r for r in result.invalid_reasons), \
        result.invalid_reasons
    assert target_summary(result)["censored"] == UNANSWERED

    # the interval logs (what analysis reads) carry the censored values too, in the last second
    intervals = [iv for log in result.interval_logs for iv in hdr.read_interval_log(log)
                 if iv.tag == tag_of("GET")]
    assert sum(iv.histogram.get_total_count() for iv in intervals) == result.scheduled
    last = max(intervals, key=lambda iv: iv.start_s).histogram
    assert count_at_least(last, drain_us * 0.999) == UNANSWERED
    censored_rows = [row for row in result.timeseries if row["censored"]]
    assert sum(row["censored"] for row in censored_rows) == UNANSWERED


def test_what_an_answer_reports_is_logged_apart_by_second_and_never_counted_as_a_request(tmp_path):
    """``observe``: values an answer reported (a scatter's per-shard times) go to the
    observations log, in the second their request completed in, after the warm-up only;
    they add no request, error or completion."""
    log, observed = io.StringIO(), io.StringIO()
    r = Recorder(start_ns=0, start_epoch_s=100.0, warmup_ns=1 * S, log=log, end_ns=3 * S,
                 observed_log=observed)
    r.admitted("n=2", 500 * MS)  # in the warm-up: its observation is dropped
    r.record("n=2", 500 * MS, 510 * MS, True, 200)
    r.observe("n=2 leaves", 500 * MS, [9_000, 9_500])
    for intended in (1200 * MS, 2200 * MS):
        r.admitted("n=2", intended)
        r.record("n=2", intended, intended + 10 * MS, True, 200)
        r.observe("n=2 leaves", intended, [3_000, 7_000])
        r.observe("n=2 slowest leaf", intended, [7_000])
    r.finish(3 * S)
    by_tag = tags(observed.getvalue(), tmp_path)
    leaves, slowest = by_tag[tag_of("n=2 leaves")], by_tag[tag_of("n=2 slowest leaf")]
    assert [iv.start_s for iv in leaves] == pytest.approx([1.0, 2.0])
    assert [iv.histogram.get_total_count() for iv in leaves] == [2, 2]
    assert slowest[0].histogram.get_max_value() == pytest.approx(7_000, rel=0.002)
    assert set(tags(log.getvalue(), tmp_path)) == {tag_of("n=2")}
    doc = r.result()
    assert doc["names"].keys() == {"n=2"} and doc["names"]["n=2"]["ok"] == 2
    # without an observations log, nothing is kept
    quiet = Recorder(start_ns=0, start_epoch_s=100.0, warmup_ns=0, log=io.StringIO())
    quiet.observe("x", 1 * S, [1])
    assert quiet.result()["names"] == {}
