"""Arrival schedules and what a generator process records."""
from __future__ import annotations

import io
import statistics
from itertools import chain

import pytest

from bench.load.plan import ARRIVALS, LoadPlan, arrival_offsets_ns, deal, split
from bench.load.recorder import Recorder


def plan(**kw) -> LoadPlan:
    return LoadPlan(**{"rate_per_s": 100, "duration_s": 10, "output_dir": "/tmp/x", **kw})


def test_constant_arrivals_are_evenly_spaced_at_the_rate():
    offsets = list(arrival_offsets_ns(plan(rate_per_s=250, duration_s=2, warmup_s=1)))
    assert len(offsets) == 750
    gaps = {b - a for a, b in zip(offsets, offsets[1:])}
    assert gaps <= {4_000_000, 3_999_999, 4_000_001}


def test_poisson_arrivals_are_seeded_and_have_the_right_rate():
    a = list(arrival_offsets_ns(plan(arrival="poisson", seed=3, rate_per_s=500, duration_s=20)))
    b = list(arrival_offsets_ns(plan(arrival="poisson", seed=3, rate_per_s=500, duration_s=20)))
    c = list(arrival_offsets_ns(plan(arrival="poisson", seed=4, rate_per_s=500, duration_s=20)))
    assert a == b and a != c
    assert abs(len(a) - 10_000) < 4 * 100  # 4 sigma of a Poisson count of 10,000
    gaps = [y - x for x, y in zip(a, a[1:])]
    assert statistics.pstdev(gaps) == pytest.approx(statistics.mean(gaps), rel=0.05)  # exponential


def test_split_keeps_the_total_rate_and_gives_each_process_its_own_seed():
    parts = split(plan(rate_per_s=900, seed=5), 3)
    assert [p.rate_per_s for p in parts] == [300, 300, 300]
    assert len({p.seed for p in parts}) == 3 and [p.process_index for p in parts] == [0, 1, 2]
    assert sorted(p.options["phase_ns"] for p in parts) == [0, 1_111_111, 2_222_222]


@pytest.mark.parametrize("arrival", ARRIVALS)
@pytest.mark.parametrize("generators", [1, 2, 3, 7])
def test_a_dealt_schedule_is_one_generators_schedule_cut_into_deterministic_slices(arrival, generators):
    """What a distributed run's workers send (``deal``): together, exactly the arrivals one
    generator process sends, each once, in even shares; the same slices every time."""
    whole = plan(arrival=arrival, rate_per_s=330, duration_s=3, warmup_s=0.5, seed=7)
    single = list(arrival_offsets_ns(split(whole, 1)[0]))
    dealt = deal(whole, generators)
    slices = [list(arrival_offsets_ns(p)) for p in dealt]
    assert sorted(chain.from_iterable(slices)) == single
    assert sum(map(len, slices)) == len(single)  # no arrival twice
    assert max(map(len, slices)) - min(map(len, slices)) <= 1
    assert slices == [list(arrival_offsets_ns(p)) for p in deal(whole, generators)]
    # a worker gets its slice as JSON from its master
    assert [LoadPlan.from_json(p.to_json()) for p in dealt] == dealt
    assert [p.process_index for p in dealt] == list(range(generators))
    assert {p.own_rate_per_s for p in dealt} == {whole.rate_per_s / generators}


def test_a_dealt_schedule_has_no_slice_past_its_generators():
    with pytest.raises(ValueError):
        plan(slices=2, process_index=2)
    with pytest.raises(ValueError):
        deal(plan(), 0)


@pytest.mark.parametrize("bad", [{"rate_per_s": 0}, {"duration_s": 0}, {"warmup_s": -1},
                                 {"arrival": "bursty"}, {"max_in_flight": 0}])
def test_bad_plans_are_refused(bad):
    with pytest.raises(ValueError):
        plan(**bad)


def test_recorder_discards_warmup_measures_from_intended_time_and_rotates_seconds():
    log = io.StringIO()
    r = Recorder(start_ns=0, start_epoch_s=1000.0, warmup_ns=1_000_000_000, log=log)
    r.record("a", intended_ns=500_000_000, done_ns=600_000_000, ok=True, status=200)
    assert r.warmup_requests == 1 and not r.names
    # intended at 1.2 s, sent late at 1.25 s, done at 1.3 s: 100 ms from intended
    r.sending(1_200_000_000, 1_250_000_000)
    r.record("a", 1_200_000_000, 1_300_000_000, ok=True, status=200)
    r.record("a", 1_500_000_000, 2_100_000_000, ok=False, status=503)
    r.finish(2_500_000_000)
    stats = r.names["a"]
    assert stats.latency.get_total_count() == 2
    assert stats.latency.get_min_value() == pytest.approx(100_000, rel=0.001)
    assert stats.latency.get_max_value() == pytest.approx(600_000, rel=0.001)
    assert r.lateness.get_max_value() == pytest.approx(50_000, rel=0.001)
    assert (stats.ok, stats.errors, dict(stats.statuses)) == (1, 1, {"200": 1, "503": 1})
    seconds = [(row["second"], row["completed"]) for row in r.timeseries]
    assert seconds == [(1, 1), (2, 1)]
    assert log.getvalue().count("Tag=a,") == 2


def test_recorder_counts_out_of_range_latencies():
    r = Recorder(0, 0.0, 0, io.StringIO())
    r.record("slow", 0, 120 * 10**9, ok=True, status=200)
    assert r.names["slow"].out_of_range == 1
    assert r.result()["names"]["slow"]["out_of_range"] == 1
