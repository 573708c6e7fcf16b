"""Percentiles of histograms, and confidence intervals over trials.

A figure pooled over trials (and every ratio of two such) is read from all of them at once: a percentile is
read from all the trials' histograms added together, CPU per request is all the CPU over all
the requests. Their 95% interval is the delete-one-trial jackknife on the log scale with
Student-t over k - 1 degrees of freedom (``over_trials``, ``ratio_over_trials``): a trial is
the unit that drifts, so it is the unit left out; a positive quantity's interval is
symmetric in its logarithm, never below zero. For a statistic that is a mean of per-trial
values the jackknife's pseudo-values are those values and the interval is the paired t
interval exactly (``paired_ratio``).

The other experiments still use the two-level bootstrap below.

A measured step leaves one-second interval histograms (µs). A statistic's point estimate is
read from all of them added together (exactly as HdrHistogram would); its 95% interval
comes from a two-level block bootstrap: the trials are drawn with replacement, then each
drawn trial's seconds (a second is the block, so short-range correlation stays inside it),
the drawn seconds are added, and the statistic is read again. Resampling the *same* seconds
for several request names keeps paired statistics (k=4 minus k=0) paired. That is for one
placement's figure; a ratio between placements never comes from here but from
``paired_ratio``: one log ratio per trial, Student-t over the trials.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram
from scipy.stats import t as student_t
from scipy.stats import ttest_ind as welch_test

from bench.results.model import CONFIDENCE, Estimate, Quantile, Ratio


@dataclass
class Blocks:
    """Interval histograms as a dense matrix: ``counts[block, bucket]`` over shared buckets.

    ``values[bucket]`` is the bucket's highest equivalent value in µs (what HdrHistogram
    reports for a percentile that falls in it); ``strata[block]`` is the block's trial."""

    counts: np.ndarray
    values: np.ndarray
    strata: np.ndarray

    @classmethod
    def from_histograms(cls, histograms: Sequence[HdrHistogram], strata: Sequence[int],
                        buckets: np.ndarray | None = None) -> "Blocks":
        """``buckets``: counts-array indices to keep (default: every non-empty one)."""
        if not histograms:
            return cls(np.zeros((0, 0), np.int64), np.zeros(0), np.zeros(0, np.int64))
        dense = np.stack([np.ctypeslib.as_array(h.counts).astype(np.int64) for h in histograms])
        if buckets is None:
            buckets = np.flatnonzero(dense.sum(axis=0))
        ref = histograms[0]
        values = np.array([ref.get_highest_equivalent_value(ref.get_value_from_index(int(i)))
                           for i in buckets], dtype=float)
        return cls(dense[:, buckets], values, np.asarray(strata, dtype=np.int64))

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def percentile_of_counts(counts: np.ndarray, values: np.ndarray, q: float) -> np.ndarray:
    """HdrHistogram's percentile rule on each row of ``counts`` (2-D) or on one vector:
    the value of the first bucket where the cumulative count reaches max(1, round(q% * n))."""
    counts = np.atleast_2d(counts)
    cumulative = np.cumsum(counts, axis=1)
    totals = cumulative[:, -1] if cumulative.shape[1] else np.zeros(len(counts))
    target = np.maximum(1, np.floor(q * totals / 100.0 + 0.5))  # HdrHistogram's exact arithmetic
    index = np.array([np.searchsorted(row, t) for row, t in zip(cumulative, target)])
    out = values[np.minimum(index, len(values) - 1)] if len(values) else np.full(len(counts), np.nan)
    return np.where(totals > 0, out, np.nan)


def resample_weights(strata: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``weights[resample, block]``: how often each block is drawn in a two-level bootstrap.

    Level one draws the trials (strata) with replacement, so trial-to-trial drift widens the
    interval; level two redraws each drawn trial's seconds with replacement. Drawing a trial
    c times, each time resampling its m blocks, is one multinomial draw of c*m blocks."""
    weights = np.zeros((resamples, len(strata)))
    trials = np.unique(strata)
    picks = rng.multinomial(len(trials), np.full(len(trials), 1 / len(trials)), size=resamples)
    for column, stratum in enumerate(trials):
        members = np.flatnonzero(strata == stratum)
        draws = np.stack([rng.multinomial(n, np.full(len(members), 1 / len(members)))
                          for n in picks[:, column] * len(members)])
        weights[:, members] = draws
    return weights


def bootstrap_percentile(blocks: Blocks, q: float, weights: np.ndarray) -> np.ndarray:
    """The q-th percentile (µs) of each resample (one row of ``weights`` each)."""
    if blocks.counts.size == 0:
        return np.full(len(weights), np.nan)
    return percentile_of_counts(weights @ blocks.counts, blocks.values, q)


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The central ``confidence`` interval of bootstrap ``samples`` (NaNs ignored)."""
    samples = samples[np.isfinite(samples)]
    if len(samples) < 2:
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


# -- estimates --------------------------------------------------------------------------

def percentile_estimate(blocks: Blocks, quantile: Quantile, weights: np.ndarray,
                        resampled: np.ndarray | None = None) -> Estimate:
    """The ``quantile`` of all ``blocks`` added together, with its two-level bootstrap
    interval; unsupported (kept, never printed) below the quantile's ``min_samples``.
    ``resampled``: ``weights @ blocks.counts`` when the caller already has it (reading
    several percentiles of one series costs one matrix product, not one each)."""
    total = blocks.total
    if total == 0:
        return Estimate(None, samples=0)
    point = float(percentile_of_counts(blocks.counts.sum(axis=0), blocks.values, quantile.q)[0])
    boot = (bootstrap_percentile(blocks, quantile.q, weights) if resampled is None
            else percentile_of_counts(resampled, blocks.values, quantile.q))
    ci = interval(boot)
    return Estimate(point, *(ci or (None, None)), samples=total,
                    supported=total >= quantile.min_samples)


def t_estimate(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean of per-trial ``values`` with the Student-t interval (n - 1 degrees of freedom);
    no interval from fewer than two values."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return Estimate(None, samples=0)
    mean = float(x.mean())
    if len(x) < 2:
        return Estimate(mean, samples=len(x))
    half = float(student_t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return Estimate(mean, mean - half, mean + half, samples=len(x))


def paired_ratio(a: Sequence[float | None], b: Sequence[float | None], supported: bool = True,
                 confidence: float = CONFIDENCE) -> Ratio:
    """B / A from per-trial values paired by index (trial t of A ran back to back with
    trial t of B, same seed). A pair enters only when both values are positive numbers (an
    invalid step is passed as None). The value is the geometric mean of the per-trial ratios
    and the interval exp(mean ln(B/A) +- t * se) over the pairs, n - 1 degrees of freedom:
    drift between trials hits both sides of a pair and cancels in its log ratio. It is
    ``ratio_over_trials`` of that mean, whose jackknife pseudo-values are the pairs' logs."""
    logs = np.array([np.log(y / x) for x, y in zip(a, b)
                     if x is not None and y is not None and np.isfinite(x) and np.isfinite(y)
                     and x > 0 and y > 0], dtype=float)
    if not len(logs):
        return Ratio(None, supported=supported, note="no valid pair")
    k = len(logs)
    left_out = (logs.sum() - logs) / (k - 1) if k > 1 else np.zeros(1)
    return ratio_over_trials((1.0, np.ones(k)), (float(np.exp(logs.mean())), np.exp(left_out)),
                             supported, confidence)


def unpaired_change(a_logs: Sequence[float], b_logs: Sequence[float]) -> float | None:
    """Welch's t test p-value for "the per-trial log values of two independent runs have the
    same mean" (what ``compare`` asks of two runs); None with fewer than two on a side."""
    if len(a_logs) < 2 or len(b_logs) < 2:
        return None
    a, b = np.asarray(a_logs, float), np.asarray(b_logs, float)
    if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(welch_test(a, b, equal_var=False).pvalue)


def least_squares_slope(xs: Sequence[float], ys: Sequence[float | None]) -> float | None:
    """The slope of ``ys`` over ``xs``; None if any y is missing."""
    if any(y is None or not np.isfinite(y) for y in ys):
        return None
    x = np.asarray(xs, float) - np.mean(xs)
    return float(x @ np.asarray(ys, float) / (x @ x))


# -- pooled over trials: the delete-one-trial jackknife ---------------------------------

def leave_one_out_percentiles(counts: np.ndarray, values: np.ndarray,
                              q: float) -> tuple[float, np.ndarray]:
    """The q-th percentile (µs) of all rows of ``counts[trial, bucket]`` added, and of the
    rows added without each trial in turn (NaN where nothing is left)."""
    counts = np.atleast_2d(counts)
    total = counts.sum(axis=0)
    full = float(percentile_of_counts(total, values, q)[0]) if counts.size else float("nan")
    without = percentile_of_counts(total[None, :] - counts, values, q) if len(counts) else np.zeros(0)
    return full, np.asarray(without, dtype=float)


def leave_one_out_ratio(numerators: Sequence[float],
                        denominators: Sequence[float]) -> tuple[float, np.ndarray]:
    """sum(numerators) / sum(denominators), and the same without each trial in turn (a
    pooled mean, e.g. CPU-ms over requests served)."""
    num, den = np.asarray(numerators, float), np.asarray(denominators, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(num.sum() / den.sum()), (num.sum() - num) / (den.sum() - den)


def _pseudo_values(full_log: float, without_logs: np.ndarray) -> np.ndarray:
    """The jackknife's pseudo-values k*theta - (k-1)*theta_(-i): for a mean of per-trial
    values, exactly those values."""
    k = len(without_logs)
    return k * full_log - (k - 1) * without_logs


def _half_width(pseudo: np.ndarray, confidence: float) -> tuple[float, float, int]:
    """(t * se, se, degrees of freedom) of the mean of ``pseudo``."""
    df = len(pseudo) - 1
    se = float(np.std(pseudo, ddof=1) / np.sqrt(len(pseudo)))
    return float(student_t.ppf((1 + confidence) / 2, df) * se), se, df


def over_trials(full: float, without: Sequence[float], samples: int | None = None,
                supported: bool = True, confidence: float = CONFIDENCE) -> Estimate:
    """A positive figure pooled over k trials (``full``) and its values with each trial left
    out (``without``), as an Estimate with the jackknife's interval on the log scale:
    exp(ln full +- t(k-1) * se). No interval from one trial or a non-positive value."""
    without = np.asarray(without, float)
    if not np.isfinite(full) or full <= 0:
        return Estimate(None if not np.isfinite(full) else full, samples=samples, supported=supported)
    if len(without) < 2 or not np.all(np.isfinite(without)) or np.any(without <= 0):
        return Estimate(full, samples=samples, supported=supported)
    pseudo = _pseudo_values(float(np.log(full)), np.log(without))
    half, _, _ = _half_width(pseudo, confidence)
    return Estimate(full, full * float(np.exp(-half)), full * float(np.exp(half)),
                    samples=samples, supported=supported)


def ratio_over_trials(a: tuple[float, Sequence[float]], b: tuple[float, Sequence[float]],
                      supported: bool = True, confidence: float = CONFIDENCE) -> Ratio:
    """B / A of two figures pooled over the same k trials, each given as (pooled value,
    values with each trial left out); the trials are the pairs (trial t of A ran back to back
    with trial t of B). The value is B/A of the pooled figures; the interval and the t test
    of "no difference" come from the jackknife pseudo-values of ln(B/A), stored as the
    Ratio's ``log_ratios`` (one per pair)."""
    (full_a, without_a), (full_b, without_b) = a, b
    if not (np.isfinite(full_a) and np.isfinite(full_b) and full_a > 0 and full_b > 0):
        return Ratio(None, supported=supported, note="no valid pair")
    theta = float(np.log(full_b / full_a))
    wa, wb = np.asarray(without_a, float), np.asarray(without_b, float)
    if len(wa) < 2 or not (np.all(wa > 0) and np.all(wb > 0)):
        return Ratio(float(np.exp(theta)), log_ratios=(theta,) if len(wa) == 1 else (),
                     supported=supported, note="one pair: no interval")
    pseudo = _pseudo_values(theta, np.log(wb / wa))
    half, se, df = _half_width(pseudo, confidence)
    p = 1.0 if se == 0 and theta == 0 else (0.0 if se == 0 else
                                            float(2 * student_t.sf(abs(theta / se), df)))
    return Ratio(float(np.exp(theta)), float(np.exp(theta - half)), float(np.exp(theta + half)),
                 tuple(float(x) for x in pseudo), p, supported)
