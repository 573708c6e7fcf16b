"""How a measured figure and a limit become a verdict: the interval decides, never the point.

* A **ceiling** (or a ratio's ceiling, or a multiple of a calibration figure) is a *breach*
  only when the 95% interval's lower bound is over the limit, a *pass* when its upper bound
  is at or under it, and *noisy* otherwise. A **floor** is the mirror image.
* A **growth** limit ("p99 may not grow by more than 15%") compares two sets of trials: two
  runs (Welch's t over per-trial logs; the interval is exp(mean difference +- t * se) with
  Welch-Satterthwaite degrees of freedom) or two placements of one run (paired log ratios,
  t over pairs). It is a *breach* when the change is over the limit AND there is evidence of
  a change (the interval excludes 1: at most a 2.5% chance when nothing changed); a *pass*
  when the interval's upper bound is within the limit; *noisy* otherwise ("within the limit
  but too noisy to tell", or "over the limit, but not clearly a change").
* A noisy verdict says how many trials would decide, estimated from the observed spread:
  how the interval's half-width shrinks with trials (Student-t with the observed standard
  deviation, or as 1/sqrt(trials) for a bootstrap or binomial interval).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta
from scipy.stats import t as student_t

from bench.results.model import CONFIDENCE, Estimate

PASS, BREACH, NOISY, MISSING = "pass", "breach", "noisy", "missing"
VERDICTS = (PASS, BREACH, NOISY, MISSING)
MAX_TRIALS = 200  # beyond this, "more than 200 trials" (a budget too close to the figure)
WITHIN = "within the limit but too noisy to tell"
OVER = "over the limit but too noisy to tell"
NO_EVIDENCE = "over the limit, but not clearly a change"


def _t(df: float) -> float:
    return float(student_t.ppf((1 + CONFIDENCE) / 2, df))


@dataclass(frozen=True)
class Spread:
    """How an interval narrows with more trials (used only to say how many would decide).

    ``kind``: "t" (Student-t over per-trial values with standard deviation ``sd``);
    "welch" (two runs of as many trials each, standard deviations ``sd`` and ``sd_other``);
    "binomial" (``k`` events in ``n`` requests over ``trials`` trials, Clopper-Pearson);
    "scale" (a bootstrap interval: each side shrinks as 1/sqrt(trials)). ``log``: the
    interval is of a ratio and narrows on the log scale."""

    kind: str
    trials: int
    sd: float = 0.0
    sd_other: float = 0.0
    log: bool = False
    k: int = 0
    n: int = 0

    def bounds(self, m: int, e: Estimate) -> tuple[float, float]:
        """The interval around ``e.value`` at ``m`` trials, if the spread stays as it is."""
        if self.kind == "binomial":
            return clopper_pearson(self.k * m / self.trials, self.n * m / self.trials)
        f, inv = (math.log, math.exp) if self.log else (float, float)
        value = f(e.value)
        if self.kind in ("t", "welch"):
            if self.kind == "t":
                half = _t(m - 1) * self.sd / math.sqrt(m)
            else:
                a, b = self.sd ** 2, self.sd_other ** 2
                df = (m - 1) * (a + b) ** 2 / (a * a + b * b) if a + b else 1.0
                half = _t(df) * math.sqrt((a + b) / m)
            return inv(value - half), inv(value + half)
        shrink = math.sqrt(self.trials / m)
        return (inv(value - (value - f(e.low)) * shrink), inv(value + (f(e.high) - value) * shrink))

    @classmethod
    def of_t_estimate(cls, e: Estimate) -> "Spread | None":
        """From a mean's t interval over ``e.samples`` per-trial values."""
        n = e.samples or 0
        if e.ci95 is None or n < 2:
            return None
        return cls("t", n, sd=(e.high - e.low) / 2 * math.sqrt(n) / _t(n - 1))

    @classmethod
    def of_logs(cls, logs: Sequence[float]) -> "Spread | None":
        """From per-pair log ratios (a paired ratio's)."""
        if len(logs) < 2:
            return None
        return cls("t", len(logs), sd=float(np.std(logs, ddof=1)), log=True)


def clopper_pearson(k: float, n: float) -> tuple[float, float]:
    """The exact 95% interval of a proportion of ``k`` events in ``n`` trials."""
    tail = (1 - CONFIDENCE) / 2
    low = 0.0 if k <= 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k >= n else float(beta.ppf(1 - tail, k + 1, n - k))
    return low, high


def trials_to_clear(e: Estimate, target: float, spread: Spread | None) -> int | None:
    """Trials at which the interval would no longer reach ``target`` (the bound it has to
    clear), if the spread stays what it is; None when unknowable or over ``MAX_TRIALS``."""
    if spread is None or e.value is None or e.ci95 is None or e.value == target:
        return None
    if spread.log and min(e.value, e.low, e.high, target) <= 0:
        return None
    for m in range(max(spread.trials + 1, 2), MAX_TRIALS + 1):
        low, high = spread.bounds(m, e)
        if (high < target) if target > e.value else (low > target):
            return m
    return None


@dataclass(frozen=True)
class Decision:
    verdict: str
    reason: str = ""
    trials_needed: int | None = None


def ceiling(e: Estimate, limit: float, spread: Spread | None) -> Decision:
    """The figure may not exceed ``limit``: breach when the whole interval is over it."""
    if e.ci95 is None:
        return Decision(NOISY, "no interval (fewer than two valid trials)")
    if e.low > limit:
        return Decision(BREACH, "the whole interval is over the limit")
    if e.high <= limit:
        return Decision(PASS)
    if e.value <= limit:
        return Decision(NOISY, WITHIN, trials_to_clear(e, limit, spread))
    return Decision(NOISY, OVER, trials_to_clear(e, limit, spread))


def floor(e: Estimate, limit: float, spread: Spread | None) -> Decision:
    """The figure may not fall under ``limit``: breach when the whole interval is under it."""
    if e.ci95 is None:
        return Decision(NOISY, "no interval (fewer than two valid trials)")
    if e.high < limit:
        return Decision(BREACH, "the whole interval is under the limit")
    if e.low >= limit:
        return Decision(PASS)
    reason = WITHIN if e.value >= limit else "under the limit but too noisy to tell"
    return Decision(NOISY, reason, trials_to_clear(e, limit, spread))


def growth(change: Estimate, limit: float, spread: Spread | None) -> Decision:
    """``change`` is new/old with its interval; ``limit`` the allowed growth (0.15 = 15%)."""
    bound = 1 + limit
    if change.ci95 is None:
        return Decision(NOISY, "no interval: a test needs at least two valid trials on each side")
    if change.value > bound and change.low > 1:
        return Decision(BREACH, "over the limit, and the change is significant")
    if change.high <= bound:
        return Decision(PASS)
    if change.value <= bound:
        return Decision(NOISY, WITHIN, trials_to_clear(change, bound, spread))
    return Decision(NOISY, NO_EVIDENCE, trials_to_clear(change, 1.0, spread))


def welch_change(old: Sequence[float], new: Sequence[float]) -> tuple[Estimate, Spread | None]:
    """new/old from two independent sets of positive per-trial values: exp of the difference
    of their mean logs, with Welch's interval. No interval with fewer than two on a side."""
    a = np.log(np.asarray([v for v in old if v and v > 0], float))
    b = np.log(np.asarray([v for v in new if v and v > 0], float))
    if len(a) == 0 or len(b) == 0:
        return Estimate(None), None
    d = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return Estimate(math.exp(d), samples=min(len(a), len(b))), None
    va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))
    se2 = va / len(a) + vb / len(b)
    if se2 == 0:
        return Estimate(math.exp(d), math.exp(d), math.exp(d), min(len(a), len(b))), None
    df = se2 ** 2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    half = _t(df) * math.sqrt(se2)
    spread = Spread("welch", min(len(a), len(b)), sd=math.sqrt(va), sd_other=math.sqrt(vb), log=True)
    return Estimate(math.exp(d), math.exp(d - half), math.exp(d + half), min(len(a), len(b))), spread
