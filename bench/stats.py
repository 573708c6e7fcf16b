"""Percentiles of histograms and bootstrap confidence intervals for them.

A measured step leaves one-second interval histograms (µs). A statistic's point estimate is
read from all of them added together (exactly as HdrHistogram would); its 95% interval
comes from a two-level block bootstrap: the trials are drawn with replacement, then each
drawn trial's seconds (a second is the block, so short-range correlation stays inside it),
the drawn seconds are added, and the statistic is read again. Resampling the *same* seconds
for several request names keeps paired statistics (k=4 minus k=0) paired. A ratio's
interval comes from the ratio of independently resampled numerator and denominator.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

CONFIDENCE = 0.95


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


@dataclass(frozen=True)
class Estimate:
    """A point value with its bootstrap interval (None when it cannot be had)."""

    value: float | None
    ci95: tuple[float, float] | None

    def to_json(self, digits: int = 1) -> dict:
        return {"value": None if self.value is None else round(self.value, digits),
                "ci95": None if self.ci95 is None else [round(v, digits) for v in self.ci95]}

    def excludes(self, x: float) -> bool:
        """True when the interval lies wholly on one side of ``x`` (the difference is
        significant at the interval's level)."""
        return self.ci95 is not None and (self.ci95[0] > x or self.ci95[1] < x)


def estimate(point: float | None, samples: np.ndarray) -> Estimate:
    if point is None or not np.isfinite(point):
        return Estimate(None, None)
    return Estimate(float(point), interval(samples))


def bootstrap_trials(values: Sequence[float], weights_by_trial: Sequence[float], resamples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Draws of a per-trial quantity's weighted mean (weights e.g. request counts) whose
    central 95% is the Student-t interval over trials: mean +- t(n-1) * s / sqrt(n). With
    two trials t has one degree of freedom and the interval is very wide, as it should be;
    with one trial there is no interval (all NaN)."""
    values = np.asarray(values, dtype=float)
    w = np.asarray(weights_by_trial, dtype=float)
    if len(values) < 2 or w.sum() <= 0:
        return np.full(resamples, np.nan)
    mean = float((values * w).sum() / w.sum())
    se = float(values.std(ddof=1) / np.sqrt(len(values)))
    return mean + se * rng.standard_t(len(values) - 1, size=resamples)
