"""Bootstrap intervals: they cover a known truth about as often as they claim to."""
from __future__ import annotations

import numpy as np
import pytest

from bench.results import hdr
from bench.results.model import Estimate
from bench.results.stats import (Blocks, bootstrap_percentile, interval, paired_ratio,
                                 resample_weights, t_estimate)


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
    est = t_estimate([1.0, 2.0, 3.0])
    assert est.low == pytest.approx(2 - 4.303 / 3**0.5, abs=1e-3)  # t(0.975, 2 df) = 4.303
    assert est.high == pytest.approx(2 + 4.303 / 3**0.5, abs=1e-3)
    assert t_estimate([1.0]).ci95 is None and t_estimate([]).value is None
    assert not Estimate(1.02, 0.97, 1.08).excludes(1.0)  # "not significant"
    assert Estimate(1.5, 1.3, 1.7).excludes(1.0)


def test_paired_ratio_pairs_by_trial_and_skips_invalid_pairs():
    # a 10% drift per trial hits both sides of each pair; the ratio is exactly 2 in each
    a = [100.0, 110.0, 121.0, None]
    b = [200.0, 220.0, 242.0, 999.0]
    r = paired_ratio(a, b)
    assert r.pairs == 3 and r.value == pytest.approx(2.0)
    assert r.ci95 == pytest.approx((2.0, 2.0)) and r.significant and r.p_value == 0.0
    assert r.verdict_against(2.5) == "meets" and r.verdict_against(1.5) == "misses"
    wide = paired_ratio([1.0, 1.0, 1.0], [1.2, 0.9, 1.3])
    assert wide.low < 1 < wide.high and not wide.significant
    assert wide.verdict_against(1.2) == "inconclusive"  # the point is under, the interval is not
    assert paired_ratio([None], [1.0]).value is None
    assert paired_ratio([1.0], [2.0]).ci95 is None  # one pair: a point, no interval
    assert not paired_ratio(a, b, supported=False).significant


def simulated_trial_p99(rng, trials, drift, ratio, samples_per_trial):
    """Per-trial p99 of placements A and B, run back to back in each trial: a machine drift
    factor per trial (lognormal, sd ``drift``) multiplies both; B is ``ratio`` times A."""
    a, b = [], []
    for _ in range(trials):
        machine = np.exp(rng.normal(0, drift))
        a.append(np.percentile(machine * rng.lognormal(7.0, 0.5, samples_per_trial), 99,
                               method="inverted_cdf"))
        b.append(np.percentile(machine * ratio * rng.lognormal(7.0, 0.5, samples_per_trial), 99,
                               method="inverted_cdf"))
    return a, b


@pytest.mark.parametrize("trials", [3, 5])  # the quick and full profiles
@pytest.mark.parametrize("drift", [0.03, 0.08])
def test_paired_intervals_cover_the_true_ratio_under_drift(trials, drift):
    rng = np.random.default_rng(trials * 1000 + int(drift * 100))
    repetitions, true_ratio = 200, 2.0
    covered = 0
    for _ in range(repetitions):
        r = paired_ratio(*simulated_trial_p99(rng, trials, drift, true_ratio, 1500))
        covered += r.low <= true_ratio <= r.high
    assert covered / repetitions >= 0.90


@pytest.mark.parametrize("trials", [3, 5])
@pytest.mark.parametrize("drift", [0.03, 0.08])
def test_no_difference_is_rarely_called_significant_under_drift(trials, drift):
    rng = np.random.default_rng(7 + trials * 10 + int(drift * 100))
    repetitions = 200
    fired = sum(paired_ratio(*simulated_trial_p99(rng, trials, drift, 1.0, 1500)).significant
                for _ in range(repetitions))
    assert fired / repetitions <= 0.06


def test_a_pooled_mean_of_per_trial_values_is_the_paired_t_interval():
    from bench.results.stats import leave_one_out_ratio, ratio_over_trials

    # each trial serves the same number of requests: the pooled ratio of means is the mean
    # of per-trial values, and the jackknife's pseudo-values are the per-trial log ratios
    a, b = [1.0, 1.1, 0.9, 1.05], [2.1, 2.0, 1.9, 2.3]
    served = [100] * 4
    pooled = ratio_over_trials(leave_one_out_ratio([x * 100 for x in a], served),
                               leave_one_out_ratio([x * 100 for x in b], served))
    assert pooled.value == pytest.approx(sum(b) / sum(a))
    assert pooled.pairs == 4 and pooled.low < pooled.value < pooled.high
    assert pooled.significant and pooled.p_value < 0.01


def test_a_positive_figure_over_trials_has_a_positive_interval_on_the_log_scale():
    from bench.results.stats import leave_one_out_ratio, over_trials

    # a spread that would put a symmetric interval below zero (68 +- 76)
    e = over_trials(*leave_one_out_ratio([10.0, 130.0, 64.0], [1, 1, 1]))
    assert e.low > 0 and e.value == pytest.approx(68.0)
    assert e.high / e.value == pytest.approx(e.value / e.low)
    assert over_trials(*leave_one_out_ratio([5.0], [1])).ci95 is None  # one trial: no interval


def test_a_pooled_percentile_is_read_from_every_trial_added():
    from bench.results.stats import leave_one_out_percentiles
    values = np.array([1.0, 2.0, 3.0, 4.0])
    counts = np.array([[10, 0, 0, 0], [0, 0, 0, 10], [0, 10, 0, 0]])
    full, without = leave_one_out_percentiles(counts, values, 50)
    assert full == 2.0  # 30 samples: the 15th is in bucket 2
    # without trial 1: ten 1s and ten 4s, the 10th sample is a 1; and so on
    assert list(without) == [2.0, 1.0, 1.0]
