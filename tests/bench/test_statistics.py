"""Bootstrap intervals: they cover a known truth about as often as they claim to."""
from __future__ import annotations

import numpy as np
import pytest

from bench import hdr
from bench.stats import Blocks, Estimate, bootstrap_percentile, bootstrap_trials, interval, \
    resample_weights


def test_resampling_draws_whole_trials_then_seconds_within_them():
    strata = np.array([0, 0, 0, 1, 1, 2])
    weights = resample_weights(strata, 500, np.random.default_rng(1))
    assert weights.shape == (500, 6)
    sizes = {0: 3, 1: 2, 2: 1}
    drawn = np.stack([weights[:, strata == t].sum(axis=1) / n for t, n in sizes.items()], axis=1)
    assert np.allclose(drawn, np.round(drawn))  # each trial drawn a whole number of times
    assert (drawn.sum(axis=1) == 3).all()  # three trials drawn per resample
    assert (drawn[:, 0] == 0).any() and (drawn[:, 0] == 3).any()  # trial drift is resampled


def test_p50_interval_covers_the_true_median_in_most_repetitions():
    rng = np.random.default_rng(2024)
    true_median = float(np.exp(6.5))  # lognormal(6.5, 0.4) in µs: median e^6.5 ≈ 665 µs
    covered = 0
    repetitions = 40
    for _ in range(repetitions):
        histograms = []
        for _second in range(20):  # 20 one-second blocks of 100 samples each
            h = hdr.new_histogram()
            for v in rng.lognormal(6.5, 0.4, 100):
                h.record_value(int(v))
            histograms.append(h)
        blocks = Blocks.from_histograms(histograms, [i // 10 for i in range(20)])
        weights = resample_weights(blocks.strata, 400, rng)
        ci = interval(bootstrap_percentile(blocks, 50, weights))
        assert ci is not None
        covered += ci[0] <= true_median * 1.001 and true_median <= ci[1] * 1.001
    assert covered >= repetitions * 0.8  # nominal 95%; HDR rounding and few reps leave slack


def test_interval_narrows_with_more_data():
    rng = np.random.default_rng(5)
    widths = []
    for n in (50, 2000):
        hs = []
        for _ in range(10):
            h = hdr.new_histogram()
            for v in rng.lognormal(6.5, 0.5, n):
                h.record_value(int(v))
            hs.append(h)
        blocks = Blocks.from_histograms(hs, [0] * 10)
        ci = interval(bootstrap_percentile(blocks, 99, resample_weights(blocks.strata, 300, rng)))
        widths.append(ci[1] - ci[0])
    assert widths[1] < widths[0] / 2


def test_trial_interval_is_students_t_and_says_when_it_cannot_tell():
    samples = bootstrap_trials([1.0, 1.0, 1.0], [10, 20, 30], 200, np.random.default_rng(0))
    assert np.allclose(samples, 1.0)
    low, high = interval(bootstrap_trials([1.0, 2.0, 3.0], [1, 1, 1], 20000, np.random.default_rng(0)))
    assert low == pytest.approx(2 - 4.303 * 1 / 3**0.5, abs=0.1)  # t(2) = 4.303
    assert high == pytest.approx(2 + 4.303 * 1 / 3**0.5, abs=0.1)
    assert np.isnan(bootstrap_trials([1.0], [5], 10, np.random.default_rng(0))).all()
    est = Estimate(1.02, (0.97, 1.08))
    assert not est.excludes(1.0)  # "not significant"
    assert Estimate(1.5, (1.3, 1.7)).excludes(1.0)
