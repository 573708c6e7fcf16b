"""The leaves and the scatter: partitions, merging, seeded delays, hedging."""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from shop.errors import InvalidValue, Unavailable
from shop.search.api import Hit
from shop.search.leaves import (LeafDelay, LeafService, Scatter, draw, first_answer, seed_partition,
                                shard_of, timed)
from shop.search.service import SCHEMA, SearchService, SearchSettings, seed_catalog
from shop.storage.sqlite import SqliteDatabase

SETTINGS = SearchSettings(catalog_size=600, catalog_seed=7)
SHARDS = 4


@pytest.fixture
def leaves(tmp_path: Path):
    dbs = [SqliteDatabase(f"sqlite:///{tmp_path / f'leaf{s}.db'}") for s in range(SHARDS)]
    for shard, db in enumerate(dbs):
        seed_partition(db, SETTINGS, shard, SHARDS)
    yield [[LeafService(db, s, r) for r in range(2)] for s, db in enumerate(dbs)]
    for db in dbs:
        db.close()


@pytest.fixture
def whole(db) -> SearchService:
    db.apply_schema(SCHEMA)
    seed_catalog(db, SETTINGS)
    return SearchService(db, SETTINGS)


def number(sku: str) -> int:
    return int(sku.split("-")[1])


def test_the_shards_partition_the_catalog(leaves, whole):
    everything = {h.sku for h in whole.search("kettle", 100)}
    per_shard = [{h.sku for h in leaves[s][0].query("kettle", 100)} for s in range(SHARDS)]
    assert set().union(*per_shard) == everything
    assert sum(map(len, per_shard)) == len(everything)
    for shard, skus in enumerate(per_shard):
        assert all(shard_of(number(sku), SHARDS) == shard for sku in skus)


def test_scatter_merges_the_best_hits_of_the_first_n_shards(leaves):
    scatter = Scatter(leaves, threads=8)
    try:
        for n in (1, 2, SHARDS):
            hits = scatter.scatter("oak lamp", n, 10).hits
            wanted = sorted((h for s in range(n) for h in leaves[s][0].query("oak lamp", 10)),
                            key=lambda h: (-h.score, h.sku))[:10]
            assert hits == wanted
            assert {shard_of(number(h.sku), SHARDS) for h in hits} <= set(range(n))
        for bad in (0, SHARDS + 1):
            with pytest.raises(InvalidValue):
                scatter.scatter("lamp", bad)
        with pytest.raises(InvalidValue):
            scatter.scatter("lamp", 2, delay="tail")  # a delay the leaves do not define (a seed is 0 when none is given)
        with pytest.raises(InvalidValue):
            scatter.scatter("lamp", 2, hedge_ms=0)
    finally:
        scatter.close()


def test_delays_are_a_function_of_seed_shard_and_replica():
    tail = LeafDelay(base_ms=1, slow_p=0.25, slow_ms=50)
    assert draw(9, 3, 1) == draw(9, 3, 1) != draw(9, 3, 0)
    draws = [tail.delay_ms(seed, 0, 0) for seed in range(20_000)]
    assert set(draws) == {1.0, 51.0}
    slow = draws.count(51.0) / len(draws)
    assert abs(slow - 0.25) < 4 * math.sqrt(0.25 * 0.75 / len(draws))
    one_slow = LeafDelay(base_ms=0, slow_p=1.0, slow_ms=5, slow_replicas=(0,))
    assert one_slow.delay_ms(1, 0, 0) == 5 and one_slow.delay_ms(1, 0, 1) == 0


def test_a_lognormal_base_has_the_median_and_spread_asked_for():
    spread = LeafDelay(base_ms=2.0, base_sigma=0.5)
    logs = [math.log(spread.delay_ms(seed, 1, 0)) for seed in range(20_000)]
    logs.sort()
    assert math.exp(logs[len(logs) // 2]) == pytest.approx(2.0, rel=0.03)
    mean = sum(logs) / len(logs)
    assert math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs)) == pytest.approx(0.5, rel=0.03)
    with pytest.raises(ValueError):
        LeafDelay(base_sigma=-1)


def test_an_unknown_delay_is_refused(leaves):
    with pytest.raises(InvalidValue, match="no injected delay 'tail'"):
        leaves[0][0].query("lamp", 5, "tail", 1)


class TimedLeaf:
    """A leaf answering after a fixed number of ms (a real sleep), counting its calls."""

    def __init__(self, ms: float, fail: bool = False) -> None:
        self.ms, self.fail, self.calls = ms, fail, 0
        self._lock = threading.Lock()

    def query(self, q, limit, delay=None, seed=None) -> list[Hit]:
        with self._lock:
            self.calls += 1
        time.sleep(self.ms / 1000)
        if self.fail:
            raise Unavailable("leaf is unavailable")
        return [Hit(f"SKU-{int(self.ms):06d}", q, 1, -self.ms)]


def test_a_hedge_goes_to_the_other_replica_and_the_first_answer_wins():
    slow, fast = TimedLeaf(300), TimedLeaf(1)
    scatter = Scatter([[slow, fast]], threads=4)
    try:
        seed = next(s for s in range(100) if int(draw(s, 0, -1) * 2) == 0)  # primary: slow
        started = time.perf_counter()
        result = scatter.scatter("lamp", 1, 1, hedge_ms=20, delay="ignored", seed=seed)
        took_ms = (time.perf_counter() - started) * 1000
        assert result.backups == 1 and result.hits[0].sku == "SKU-000001"
        assert took_ms < 200, took_ms
        assert (slow.calls, fast.calls) == (1, 1)
    finally:
        scatter.close()


def test_no_hedge_when_the_primary_answers_in_time():
    a, b = TimedLeaf(1), TimedLeaf(1)
    scatter = Scatter([[a, b]], threads=4)
    try:
        result = scatter.scatter("lamp", 1, 1, hedge_ms=200)
        assert result.backups == 0 and a.calls + b.calls == 1
    finally:
        scatter.close()


def test_first_answer_takes_a_success_over_an_earlier_failure():
    scatter = Scatter([[TimedLeaf(1, fail=True), TimedLeaf(30)]], threads=4)
    try:
        now = time.perf_counter_ns()
        calls = [scatter._pool.submit(timed, now, r.query, "q", 1) for r in scatter.leaves[0]]
        assert first_answer(calls).hits[0].sku == "SKU-000030"
        failing = [scatter._pool.submit(timed, now, TimedLeaf(1, fail=True).query, "q", 1)]
        with pytest.raises(Unavailable):
            first_answer(failing)
    finally:
        scatter.close()


def test_the_scatter_times_each_shard_from_its_ask_to_its_answer():
    """Ground truth: leaves that sleep 5, 40 and 80 ms. Each shard's time is at least its
    sleep and not much more (threads enough for all: no pool wait), and the slowest is the
    scatter's own wait; a hedged shard's time is its first answer's."""
    sleeps = (5, 40, 80)
    scatter = Scatter([[TimedLeaf(ms)] for ms in sleeps], threads=8)
    try:
        started = time.perf_counter_ns()
        result = scatter.scatter("lamp", 3, 3)
        took_us = (time.perf_counter_ns() - started) // 1000
        assert len(result.leaf_us) == 3
        for ms, us in zip(sleeps, result.leaf_us):
            assert ms * 1000 <= us < ms * 1000 + 30_000, (ms, us)
        assert max(result.leaf_us) <= took_us
        assert len(result.wait_us) == 3 and max(result.wait_us) < 10_000  # a thread each
    finally:
        scatter.close()
    slow, fast = TimedLeaf(300), TimedLeaf(1)
    hedged = Scatter([[slow, fast]], threads=4)
    try:
        seed = next(s for s in range(100) if int(draw(s, 0, -1) * 2) == 0)  # primary: slow
        result = hedged.scatter("lamp", 1, 1, hedge_ms=20, delay="ignored", seed=seed)
        assert 20_000 <= result.leaf_us[0] < 200_000, result.leaf_us
    finally:
        hedged.close()


def test_the_scatter_times_the_wait_for_a_pool_thread():
    """Ground truth: one pool thread and three 30 ms leaves. The first call waits for no one,
    the second for the first (about 30 ms), the third for both (about 60 ms); each shard's
    time includes its wait."""
    scatter = Scatter([[TimedLeaf(30)] for _ in range(3)], threads=1)
    try:
        result = scatter.scatter("lamp", 3, 3)
        first, second, third = result.wait_us
        assert first < 10_000
        assert 25_000 <= second < 60_000 and 55_000 <= third < 100_000, result.wait_us
        for waited, took in zip(result.wait_us, result.leaf_us):
            assert took >= waited + 30_000
    finally:
        scatter.close()


def test_a_hedge_says_how_late_it_looked_and_only_when_a_primary_was_out():
    """Ground truth: a primary that sleeps 300 ms is still out at a 20 ms hedge, so the
    scatter says how long after 20 ms it looked (a little: nothing else holds the lock); a
    primary that answers in 1 ms leaves nothing to look for, and no lateness is said."""
    slow, fast = TimedLeaf(300), TimedLeaf(1)
    hedged = Scatter([[slow, fast]], threads=4)
    try:
        seed = next(s for s in range(100) if int(draw(s, 0, -1) * 2) == 0)  # primary: slow
        result = hedged.scatter("lamp", 1, 1, hedge_ms=20, delay="ignored", seed=seed)
        assert result.backups == 1 and 0 <= result.hedge_late_us < 20_000, result
        quick = Scatter([[TimedLeaf(1), TimedLeaf(1)]], threads=4)
        try:
            assert quick.scatter("lamp", 1, 1, hedge_ms=200).hedge_late_us is None
        finally:
            quick.close()
    finally:
        hedged.close()


def test_the_tracked_hedge_delay_settles_at_the_quantile_it_was_asked_for():
    """Ground truth: primaries that take an exponential time of mean 1 ms are out after t ms
    with probability exp(-t), so 5% are still out at ln 20 = 3.0 ms. Looks at the tracked
    delay that see that many out must bring it there, from a start far off either way."""
    import random

    from shop.search.hedging import HedgeDelay
    rng = random.Random(3)
    for start_ms in (0.1, 50.0):
        tracked, n, shares, log_delays = HedgeDelay(0.05, start_ms), 10, [], []
        for look in range(20_000):
            delay = tracked.current_ms()
            out = sum(rng.expovariate(1.0) > delay for _ in range(n)) / n
            tracked.looked(out)
            if look >= 10_000:  # settled: it wanders about the quantile, look by look
                shares.append(out)
                log_delays.append(math.log(delay))
        typical = math.exp(sum(log_delays) / len(log_delays))
        assert abs(typical - math.log(20)) < 0.25, typical
        assert abs(sum(shares) / len(shares) - 0.05) < 0.005


def test_a_scatter_hedged_by_share_hedges_about_that_share_of_its_calls(leaves):
    """Leaves that sleep a lognormal time (median 2 ms): a scatter asked to hedge 20% of its
    primaries, after it has tracked its delay, sends about that many backups, and says
    which delay it waited."""
    delays = {"spread": LeafDelay(base_ms=2.0, base_sigma=0.5)}
    spread = [[LeafService(leaf._db, leaf.shard, leaf.replica, delays) for leaf in replicas]
              for replicas in leaves]
    scatter = Scatter(spread, threads=16)
    try:
        for seed in range(200):  # settling
            scatter.scatter("lamp", SHARDS, 1, hedge_share=0.2, delay="spread", seed=seed)
        results = [scatter.scatter("lamp", SHARDS, 1, hedge_share=0.2, delay="spread", seed=seed)
                   for seed in range(200, 700)]
    finally:
        scatter.close()
    share = sum(r.backups for r in results) / (len(results) * SHARDS)
    assert 0.12 < share < 0.28, share
    assert all(r.hedge_ms is not None and 0.01 <= r.hedge_ms <= 50 for r in results)
    capped = Scatter(spread, threads=16)  # hedge_ms beside a share caps the tracked delay
    try:
        assert capped.scatter("lamp", SHARDS, 1, hedge_share=0.2, hedge_ms=0.5, delay="spread",
                              seed=1).hedge_ms == 0.5
    finally:
        capped.close()


@pytest.mark.parametrize("kwargs", [{"hedge_share": 0}, {"hedge_share": 0.6},
                                    {"hedge_share": float("nan")}])
def test_a_hedge_share_out_of_range_is_refused(leaves, kwargs):
    scatter = Scatter(leaves, threads=4)
    try:
        with pytest.raises(InvalidValue):
            scatter.scatter("lamp", 2, **kwargs)
    finally:
        scatter.close()
