"""The µs histograms: exact encoding, merging by addition, and the interval log format."""
from __future__ import annotations

import io
import random

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from bench.results import hdr
from bench.results.stats import Blocks, percentile_of_counts


def samples(n: int, seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    # a latency-like mixture: mostly ~600 µs, a 2% tail of tens of ms
    return [int(rng.lognormvariate(6.4, 0.3)) if rng.random() > 0.02 else rng.randrange(10_000, 80_000)
            for _ in range(n)]


def histogram_of(values: list[int]) -> HdrHistogram:
    h = hdr.new_histogram()
    for v in values:
        assert h.record_value(v)
    return h


def test_encode_decode_round_trips_exactly():
    original = histogram_of(samples(20_000))
    decoded = hdr.decode(hdr.encode(original))
    assert decoded.equals(original)
    assert decoded.get_total_count() == 20_000
    for q in (50, 90, 99, 99.9, 100):
        assert decoded.get_value_at_percentile(q) == original.get_value_at_percentile(q)


def test_merged_histograms_of_several_generators_equal_one_histogram_of_all_samples():
    values = samples(30_000)
    rng = random.Random(3)
    parts: list[list[int]] = [[], [], []]
    for v in values:  # as three generator processes would have split them
        parts[rng.randrange(3)].append(v)
    merged = hdr.merge(hdr.decode(hdr.encode(histogram_of(p))) for p in parts)
    whole = histogram_of(values)
    assert merged.get_total_count() == whole.get_total_count()
    assert list(merged.counts) == list(whole.counts)
    assert merged.get_max_value() == whole.get_max_value()
    assert merged.get_min_value() == whole.get_min_value()


def test_averaging_percentiles_would_be_wrong_but_merging_is_exact():
    fast = histogram_of([500] * 990)
    slow = histogram_of([50_000] * 10 + [500] * 0)
    merged = hdr.merge([fast, slow])
    # p99 of everything: 1000 samples, the top 10 are slow -> p99 is at the boundary (fast)
    assert merged.get_value_at_percentile(99) == fast.get_value_at_percentile(99)
    assert merged.get_value_at_percentile(99.5) == slow.get_value_at_percentile(50)
    averaged = (fast.get_value_at_percentile(99.5) + slow.get_value_at_percentile(99.5)) / 2
    assert averaged != merged.get_value_at_percentile(99.5)


def test_out_of_range_values_are_refused_not_clipped():
    h = hdr.new_histogram()
    assert h.record_value(hdr.HIGHEST_US)
    assert not h.record_value(hdr.HIGHEST_US * 4)  # the recorder counts these and fails the run
    assert h.get_total_count() == 1


def test_interval_log_round_trips_tags_and_histograms():
    out = io.StringIO()
    writer = hdr.IntervalLogWriter(out, 1_700_000_000.0, comment="test")
    a, b = histogram_of(samples(100, 1)), histogram_of(samples(50, 2))
    writer.write("search", 0.0, 1.0, a)
    writer.write("chain_k=3", 1.0, 1.0, b)
    with pytest.raises(ValueError):
        writer.write("bad tag", 2.0, 1.0, a)
    text = out.getvalue()
    assert "#[Histogram log format version 1.3]" in text and text.count("Tag=") == 2
    path = __import__("pathlib").Path
    tmp = path(__import__("tempfile").mkdtemp()) / "x.hlog"
    tmp.write_text(text)
    got = list(hdr.read_interval_log(tmp))
    assert [(i.tag, i.start_s, i.length_s) for i in got] == [("search", 0.0, 1.0), ("chain_k=3", 1.0, 1.0)]
    assert got[0].histogram.equals(a) and got[1].histogram.equals(b)


@pytest.mark.parametrize("q", [0.1, 1, 25, 50, 90, 99, 99.9, 99.99, 100])
def test_percentile_of_counts_follows_hdrhistograms_rule(q):
    h = histogram_of(samples(5000, 11))
    blocks = Blocks.from_histograms([h], [0])
    assert percentile_of_counts(blocks.counts.sum(axis=0), blocks.values, q)[0] == \
        h.get_value_at_percentile(q)


def test_blocks_with_shared_buckets_add_up_to_the_merged_histogram():
    hs = [histogram_of(samples(1000, s)) for s in range(4)]
    union = np.flatnonzero(sum(np.ctypeslib.as_array(h.counts).astype(np.int64) for h in hs))
    blocks = Blocks.from_histograms(hs, [0, 0, 1, 1], union)
    merged = hdr.merge(hs)
    for q in (50, 99, 99.9):
        assert percentile_of_counts(blocks.counts.sum(axis=0), blocks.values, q)[0] == \
            merged.get_value_at_percentile(q)


def test_clear_empties_a_histogram_like_reset_does():
    cleared, reset = hdr.new_histogram(), hdr.new_histogram()
    for h in (cleared, reset):
        for v in (5, 500, 50_000, 5_000_000):
            h.record_value(v)
    hdr.clear(cleared)
    reset.reset()
    for h in (cleared, reset):
        assert h.get_total_count() == 0 and h.get_max_value() == 0
        h.record_value(700)
    assert hdr.encode(cleared) == hdr.encode(reset)
    assert cleared.get_value_at_percentile(50) == reset.get_value_at_percentile(50)
