"""F(t)^n from the leaves the scatterer timed, and the equivalence verdict on it.

Every scatter answers, per shard it asked, how long that shard took from the moment the
scatter asked its leaves (``leaf_us``, shop/search/leaves.py); the fan-out scenario records
those under "<kind> leaves" (n values per request) and their maximum under "<kind> slowest
leaf" (one per request: the scatter's own wait). F is the first: the distribution of one leaf
call *as the n-leaf scatter sees it*, estimated from every call, so a fan-out of 8 gives 8
samples of F per request, and F no longer comes from other (n = 1) requests that met other
neighbours. If the n calls of a request were independent draws from F, their slowest would
follow F(t)^n, so its q-quantile would be F's q^(1/n)-quantile: the prediction. Measured and
predicted come from the same seconds of the same requests, so their ratio is read per
bootstrap resample and its interval is paired.

"Agrees" is an equivalence claim: the 95% interval of measured/predicted lies inside
``MARGIN``. An interval wholly outside it "differs". Anything else "cannot tell", and says
about how many requests at that n would decide (the interval narrows as 1/sqrt(requests)).
A percentile resting on fewer samples than the 10/(1-q) rule has no verdict at all.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.results.model import QUANTILES, Quantile
from bench.results.stats import Blocks, interval, percentile_estimate, percentile_of_counts
from shop.search.leaves import draw

MARGIN = (0.8, 1.25)  # measured/predicted inside this is "the same" for a reader of the theory
LEAVES, SLOWEST = "leaves", "slowest leaf"
AGREES, DIFFERS, CANNOT_TELL, TOO_FEW = "agrees", "differs", "cannot tell", "too few samples"
PREDICTED = ("p50", "p90", "p99", "p99.9")
# "after the 95th-percentile expected latency" (Dean and Barroso): the share of leaf calls
# a hedge aimed there sends a backup for
HEDGE_SHARE = 0.05


WAITS, DREW_SLOW, DREW_NONE = "pool waits", "drew a slow leaf", "drew no slow leaf"


def observed_names(kind: str) -> tuple[str, str]:
    """The names a kind's leaf timings are recorded under: (every leaf, the slowest)."""
    return f"{kind} {LEAVES}", f"{kind} {SLOWEST}"


def wait_name(kind: str) -> str:
    """Where a kind's leaf calls' waits for a pool thread are recorded (µs, n per request)."""
    return f"{kind} {WAITS}"


def hedge_late_name(kind: str) -> str:
    """Where a hedged kind's hedge lateness is recorded (µs after hedge_ms, per request)."""
    return f"{kind} hedge lateness"


def hedge_delay_name(kind: str) -> str:
    """Where a hedged kind's hedge delays are recorded (µs the hedge waited, per request)."""
    return f"{kind} hedge delay"


def drew_names(kind: str) -> tuple[str, str]:
    """Where an injected kind's request latencies are recorded again by what the request
    drew: (those that drew at least one slow leaf, those that drew none)."""
    return f"{kind} {DREW_SLOW}", f"{kind} {DREW_NONE}"


def drew_slow(seed: int, n: int, slow_p: float, slow_replicas: tuple[int, ...] | list[int],
              replicas: int) -> bool:
    """Whether a scatter of shards 0..n-1 with ``seed`` asks at least one primary that draws
    the slow delay: the same draws the shop makes (shop/search/leaves.py: the primary of
    shard s is replica int(draw(seed, s, -1) * replicas), slow when its draw is under
    slow_p and it is among ``slow_replicas``, or they are empty)."""
    for shard in range(n):
        replica = int(draw(seed, shard, -1) * replicas)
        if (not slow_replicas or replica in slow_replicas) and draw(seed, shard, replica) < slow_p:
            return True
    return False


def predicted_quantile(q: float, n: int) -> float:
    """The percentile of one leaf's distribution that is the q-th percentile of the slowest
    of n independent leaves: F(t)^n = q/100, so F(t) = (q/100)^(1/n)."""
    return 100.0 * (q / 100.0) ** (1.0 / n)


def equivalence(ratio: tuple[float, float] | None, point: float | None, requests: int,
                margin: tuple[float, float] = MARGIN) -> tuple[str, int | None]:
    """The verdict on measured/predicted with 95% interval ``ratio`` from ``requests``
    requests, and for "cannot tell" about how many requests would decide it (None
    otherwise): enough that the interval, narrowing as 1/sqrt(requests) on a log scale,
    fits between the point and the margin's nearer edge."""
    if ratio is None or point is None or point <= 0 or ratio[0] <= 0:
        return CANNOT_TELL, None
    low, high = ratio
    if margin[0] <= low and high <= margin[1]:
        return AGREES, None
    if high < margin[0] or low > margin[1]:
        return DIFFERS, None
    # the side of the interval that faces the margin's nearer edge must fit between them
    edge = min(margin, key=lambda e: abs(math.log(point) - math.log(e)))
    room = abs(math.log(point) - math.log(edge))
    inside = margin[0] <= point <= margin[1]
    side = (math.log(high) - math.log(point)) if (edge == margin[1]) == inside \
        else (math.log(point) - math.log(low))
    if room <= 0 or side <= 0:
        return CANNOT_TELL, None
    return CANNOT_TELL, max(requests + 1, int(math.ceil(requests * (side / room) ** 2)))


def leaf_prediction(n: int, leaves: Blocks, slowest: Blocks, weights: np.ndarray
                    ) -> dict[str, Any]:
    """Per percentile of PREDICTED: the slowest leaf measured (an Estimate's JSON), F(t)^n
    predicted from every leaf call (µs, with its interval), measured/predicted with its
    paired interval, whether both rest on enough samples, and the verdict."""
    resampled_leaves, resampled_slowest = weights @ leaves.counts, weights @ slowest.counts
    all_leaves = leaves.counts.sum(axis=0)
    out: dict[str, Any] = {}
    for q in QUANTILES:
        if q.key not in PREDICTED:
            continue
        q_leaf = predicted_quantile(q.q, n)
        measured = percentile_estimate(slowest, q, weights, resampled_slowest)
        predicted = float(percentile_of_counts(all_leaves, leaves.values, q_leaf)[0])
        boot_predicted = percentile_of_counts(resampled_leaves, leaves.values, q_leaf)
        boot_measured = percentile_of_counts(resampled_slowest, slowest.values, q.q)
        ratio = interval(boot_measured / boot_predicted)
        supported = (measured.supported and leaves.total >= Quantile(q.key, q_leaf).min_samples)
        point = measured.value / predicted if measured.value and predicted else None
        verdict, needed = (equivalence(ratio, point, slowest.total) if supported
                           else (TOO_FEW, None))
        out[q.key] = {
            "basis": "leaf", "value": predicted, "ci95": interval(boot_predicted),
            "measured": measured.to_json(), "ratio": point,
            # the ratio's 95% interval (the key older runs used for it)
            "measured_over_predicted": None if ratio is None else list(ratio),
            "supported": supported,
            "agrees": {AGREES: True, DIFFERS: False}.get(verdict), "verdict": verdict,
            "requests_to_decide": needed,
            "requests_needed": max(q.min_samples, Quantile(q.key, q_leaf).min_samples // n)}
    return out


def verdict_text(prediction: Mapping[str, Any]) -> str:
    """One prediction's verdict as the report says it."""
    verdict = prediction.get("verdict")
    low, high = MARGIN
    if verdict == AGREES:
        return f"agrees (within {low:g}-{high:g}x)"
    if verdict == DIFFERS:
        return f"differs (outside {low:g}-{high:g}x)"
    if verdict == TOO_FEW:
        return f"too few samples (needs {prediction.get('requests_needed'):,} requests at this n)"
    needed = prediction.get("requests_to_decide")
    return "cannot tell" + (f" (about {needed:,} requests at this n would decide)" if needed else "")
