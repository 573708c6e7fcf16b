"""Ground truth for the fan-out analysis: synthetic leaves with a known slow probability and
delay (real sleeps, on the real Scatter and its thread pool), against F(t)^n and 1-(1-p)^n
as bench/experiments/fanout/analysis.py computes them; and hedging against its bound."""
from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from bench.experiments.fanout.analysis import binomial_interval, predicted_quantile
from bench.results import hdr
from shop.search.api import Hit
from shop.search.leaves import LeafDelay, Scatter, draw

SLOW_P, SLOW_MS, BASE_MS = 0.05, 12.0, 0.3
# 1,000 requests: p99 of the slowest leaf has its 10/(1-q) samples, and so has F's
# 0.99^(1/16) quantile from 16,000 leaf calls at n = 16 (the tool's own rule)
REQUESTS, BLOCKS = 1000, 10


class SleepingLeaf:
    """A leaf that only waits its injected delay (the LeafService rule, without a database)."""

    def __init__(self, shard: int, replica: int, delay: LeafDelay) -> None:
        self.shard, self.replica, self.delay = shard, replica, delay
        self.calls = 0

    def query(self, q, limit, delay=None, seed=None) -> list[Hit]:
        self.calls += 1
        time.sleep(self.delay.delay_ms(seed, self.shard, self.replica) / 1000)
        return [Hit(f"SKU-{self.shard:06d}", q, 1, 1.0)]


def timed(scatter: Scatter, n: int, seeds: range, **kw) -> np.ndarray:
    """End-to-end ms of one scatter per seed, one at a time."""
    out = []
    for seed in seeds:
        started = time.perf_counter()
        scatter.scatter("q", n, 1, delay="d", seed=seed, **kw)
        out.append((time.perf_counter() - started) * 1000)
    return np.array(out)


def sleeping_scatter(delay: LeafDelay) -> Scatter:
    return Scatter([[SleepingLeaf(shard, 0, delay)] for shard in range(16)], threads=32)


@pytest.fixture(scope="module")
def scatter():
    s = sleeping_scatter(LeafDelay(base_ms=BASE_MS, slow_p=SLOW_P, slow_ms=SLOW_MS))
    yield s
    s.close()


@contextmanager
def no_collection() -> Iterator[None]:
    """No garbage collection while measuring: a pause of this process stalls every leaf in
    flight at once, which is not the independence F(t)^n is about (and where one lands
    depends on what else the session imported: n = 16 failed only beside another module)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def scattered_blocks(scatter: Scatter, n: int, seeds: range):
    """(end-to-end ms per request, Blocks of every leaf call, Blocks of each request's
    slowest leaf): the leaf times the scatter itself reports (µs from asking its leaves to
    each answer), in BLOCKS consecutive blocks of one trial, as the fan-out step records them."""
    from bench.results.reader import aligned_blocks
    took, every, slowest = [], {}, {}
    per_block = len(seeds) // BLOCKS
    with no_collection():
        for i, seed in enumerate(seeds):
            key = (0, i // per_block)
            if key not in every:
                every[key], slowest[key] = hdr.new_histogram(), hdr.new_histogram()
            started = time.perf_counter()
            answer = scatter.scatter("q", n, 1, delay="d", seed=seed)
            took.append((time.perf_counter() - started) * 1000)
            for us in answer.leaf_us:
                every[key].record_value(us)
            slowest[key].record_value(max(answer.leaf_us))
    blocks = aligned_blocks({"leaves": every, "slowest": slowest})
    return np.array(took), blocks["leaves"], blocks["slowest"]


# n = 16 (~8 s) in the full tier (CI), so the README's test command answers in about 2 minutes
@pytest.mark.parametrize("n", [1, 4, pytest.param(16, marks=pytest.mark.full)])
def test_slow_fraction_and_p99_follow_theory(scatter, n):
    """Real sleeps through the real pool: the share of requests over the injected delay is
    1-(1-p)^n (within its 99% interval), and the slowest leaf's p90 and p99 are F(t)^n's
    from every leaf call, with the verdict the fan-out report would give: "agrees". (F is
    read from the same requests' leaf calls, as the report reads it: a leaf timed alone at
    another moment carries another moment's scheduler jitter, which at n = 16 is the whole
    of F's 99.94th percentile. The p50 of n > 1 is not asserted: it falls in the 0.3 ms
    mode, where the leaves of one request share the moment the pool hands them out, so
    they are not independent and measure 0.5-0.9x F(t)^n on a busy machine.)"""
    from bench.experiments.fanout.theory import AGREES, leaf_prediction
    from bench.results.stats import resample_weights
    took, leaves, slowest = scattered_blocks(scatter, n, range(n * 100_000,
                                                               n * 100_000 + REQUESTS))
    slow = int((took >= SLOW_MS).sum())
    low, high = binomial_interval(slow, REQUESTS, 0.99)
    expected = 1 - (1 - SLOW_P) ** n
    assert low <= expected <= high, (n, slow / REQUESTS, expected)
    out = leaf_prediction(n, leaves, slowest, resample_weights(slowest.strata, 400,
                                                               np.random.default_rng(n)))
    assert out["p99"]["supported"] and not out["p99.9"]["supported"]
    for key in ("p90", "p99"):
        assert out[key]["verdict"] == AGREES, (n, key, out[key]["measured_over_predicted"])


def test_the_predicted_quantile_is_the_leafs_q_to_the_1_over_n():
    assert predicted_quantile(99.0, 1) == pytest.approx(99.0)
    assert predicted_quantile(99.0, 16) == pytest.approx(100 * 0.99 ** (1 / 16))
    assert binomial_interval(0, 100)[0] == 0.0 and binomial_interval(100, 100)[1] == 1.0


@pytest.mark.full  # ~6 s: in the full tier (CI), so the README's test command answers in ~2 min
def test_hedging_bounds_the_tail_and_costs_what_the_slow_calls_are():
    """Replica 0 of each shard is slow (30 ms) with probability 0.3, replica 1 never; the
    hedge goes after 5 ms. Hedged p99 must stay under the delay plus the fast leaf's p99
    plus a 4 ms margin (thread hand-offs on a busy CI machine); the backups must be the
    share of primaries that were slower than the delay."""
    slow_replica = LeafDelay(base_ms=0.5, slow_p=0.3, slow_ms=30.0, slow_replicas=(0,))
    leaves = [[SleepingLeaf(s, r, slow_replica) for r in range(2)] for s in range(4)]
    scatter = Scatter(leaves, threads=32)
    hedge_ms, margin_ms, requests = 5.0, 4.0, 300
    try:
        fast = timed(Scatter([[leaves[0][1]]], threads=2), 1, range(200))
        backups = 0
        took = []
        for seed in range(requests):
            started = time.perf_counter()
            backups += scatter.scatter("q", 4, 1, hedge_ms=hedge_ms, delay="d", seed=seed).backups
            took.append((time.perf_counter() - started) * 1000)
        unhedged = timed(scatter, 4, range(requests))
    finally:
        scatter.close()
    bound = hedge_ms + np.percentile(fast, 99) + margin_ms
    assert np.percentile(took, 99) < bound < np.percentile(unhedged, 99)
    # a primary is slow when it is replica 0 (drawn with probability 1/2) and draws slow:
    # those, and only those (give or take a fast call the machine delayed), are hedged
    slow_primaries = sum(int(draw(seed, s, -1) * 2) == 0 and slow_replica.is_slow(seed, s, 0)
                         for seed in range(requests) for s in range(4))
    assert slow_primaries <= backups <= slow_primaries + 0.02 * requests * 4


# -- F(t)^n from every leaf call (bench/experiments/fanout/theory.py) ----------------------

def leaf_blocks(n: int, correlated: bool, seed: int, trials: int = 3, seconds: int = 10,
                per_second: int = 100):
    """Blocks of (every leaf, slowest leaf) for synthetic n-leaf requests: leaf times
    lognormal (median 2 ms, sigma 0.5), drawn independently per leaf, or (``correlated``)
    one draw shared by all n leaves of a request."""
    from bench.results.reader import aligned_blocks
    rng = np.random.default_rng(seed)
    every, slowest = {}, {}
    for trial in range(trials):
        for second in range(seconds):
            draws = rng.lognormal(np.log(2000), 0.5, (per_second, 1 if correlated else n))
            leaves = np.repeat(draws, n, axis=1) if correlated else draws
            a, b = hdr.new_histogram(), hdr.new_histogram()
            for value in leaves.ravel():
                a.record_value(int(value))
            for value in leaves.max(axis=1):
                b.record_value(int(value))
            every[(trial, second)], slowest[(trial, second)] = a, b
    blocks = aligned_blocks({"leaves": every, "slowest": slowest})
    return blocks["leaves"], blocks["slowest"]


@pytest.mark.parametrize("n", [2, 8])
def test_independent_leaves_agree_with_f_to_the_n_within_the_margin(n):
    from bench.experiments.fanout.theory import AGREES, leaf_prediction
    from bench.results.stats import resample_weights
    leaves, slowest = leaf_blocks(n, correlated=False, seed=n)
    weights = resample_weights(slowest.strata, 400, np.random.default_rng(0))
    out = leaf_prediction(n, leaves, slowest, weights)
    for key in ("p50", "p90", "p99"):  # 3,000 requests: p99 has its 1,000
        assert out[key]["supported"], key
        assert out[key]["verdict"] == AGREES, (key, out[key]["measured_over_predicted"])
        assert out[key]["ratio"] == pytest.approx(1.0, abs=0.08)
    assert not out["p99.9"]["supported"]  # 10,000 needed


def test_leaves_that_move_together_differ_from_f_to_the_n():
    """One draw for all 8 leaves: the slowest is just a leaf, so its p50 is F's p50, where
    F(t)^8 predicts F's p91.7 (exp(0.5 * 1.39) = 2.0x higher): measured/predicted ~0.5."""
    from bench.experiments.fanout.theory import DIFFERS, leaf_prediction
    from bench.results.stats import resample_weights
    leaves, slowest = leaf_blocks(8, correlated=True, seed=3)
    weights = resample_weights(slowest.strata, 400, np.random.default_rng(0))
    out = leaf_prediction(8, leaves, slowest, weights)
    assert out["p50"]["verdict"] == DIFFERS
    assert out["p50"]["ratio"] == pytest.approx(np.exp(-0.5 * 1.383), rel=0.1)


def test_the_equivalence_verdict_and_the_requests_that_would_decide():
    from bench.experiments.fanout.theory import AGREES, CANNOT_TELL, DIFFERS, equivalence
    assert equivalence((0.85, 1.2), 1.0, 100) == (AGREES, None)
    assert equivalence((0.5, 0.78), 0.6, 100) == (DIFFERS, None)
    assert equivalence((1.3, 2.0), 1.6, 100) == (DIFFERS, None)
    # inside the margin, the upper side too wide: (log(1.3/1.05) / log(1.25/1.05))^2 x 100
    verdict, needed = equivalence((0.9, 1.3), 1.05, 100)
    assert verdict == CANNOT_TELL and needed == pytest.approx(151, abs=1)
    # outside, the side facing the margin decides "differs"
    verdict, needed = equivalence((1.1, 1.6), 1.3, 100)
    assert verdict == CANNOT_TELL and needed > 1000
    assert equivalence(None, None, 10) == (CANNOT_TELL, None)
