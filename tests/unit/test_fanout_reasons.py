"""The fan-out analysis says why a prediction missed only from what the run shows.

Each test plants one cause in an otherwise clean kind (synthetic histograms or an entry of
the analysis) and checks that its reason, with its number, is found, and that a clean
miss says "no reason found"; the slow fraction is judged only where the requests that drew
no slow leaf stay clear of the threshold.
"""
from __future__ import annotations

import numpy as np

from bench.experiments.fanout.analysis import CPU_BUSY_LIMIT, NO_REASON, explain, slow_fraction
from bench.experiments.fanout.experiment import TAIL, Kind, kind_name
from bench.experiments.fanout.theory import drew_names, drew_slow
from bench.experiments import get
from bench.results.stats import Blocks
from shop.search.leaves import draw

SETTINGS = get("fanout").settings("quick")


def blocks_of(latencies_ms: list[float]) -> Blocks:
    """One block holding ``latencies_ms`` (one count per value, µs buckets)."""
    values = np.array(sorted({int(ms * 1000) for ms in latencies_ms}), dtype=float)
    counts = np.zeros((1, len(values)), dtype=np.int64)
    for ms in latencies_ms:
        counts[0, np.searchsorted(values, int(ms * 1000))] += 1
    return Blocks(counts, values, np.zeros(1, dtype=np.int64))


def tail_kind(n: int) -> Kind:
    return Kind(kind_name(n, TAIL), n, TAIL, TAIL)


def requests(n: int, drew: int, none: int, slow_ms: float, plain_ms: float) -> dict[str, Blocks]:
    """``drew`` requests at plain + slow, ``none`` at ``plain_ms`` (a spread around it)."""
    kind = tail_kind(n)
    slow = [plain_ms + slow_ms + i % 5 for i in range(drew)]
    plain = [plain_ms * (0.8 + 0.4 * (i % 10) / 10) for i in range(none)]
    names = drew_names(kind.name)
    return {kind.name: blocks_of(slow + plain), names[0]: blocks_of(slow), names[1]: blocks_of(plain)}


def entry_with(kind: dict, **extra) -> dict:
    return {"kinds": {kind_name(kind["n"], TAIL): kind}, "system_cpu_busy": 0.3,
            "lateness_p99_us": 50, **extra}


def test_a_clear_threshold_judges_the_slow_fraction():
    # 63.4% drew a slow leaf at n=100, p=1%: measured over 200 ms matches 1-(1-p)^n
    found = slow_fraction(tail_kind(100), requests(100, 634, 366, 200, 40), 200, 0.01)
    assert found["threshold_clear"] is True and found["agrees"] is True
    assert abs(found["injected"]["share"] - 0.634) < 1e-9 and found["drew_none_over"] == 0


def test_a_threshold_under_the_plain_requests_has_no_verdict():
    """The issue's case: slow_ms 30 ms, but plain n=100 requests take ~38 ms."""
    found = slow_fraction(tail_kind(100), requests(100, 634, 366, 30, 38), 30, 0.01)
    assert found["threshold_clear"] is False and found["agrees"] is None
    entry = entry_with({"n": 100, "variant": TAIL, "slow_fraction": found})
    explain(entry, SETTINGS)
    why = entry["kinds"][kind_name(100, TAIL)]["why"]
    assert any("no verdict" in w and "30 ms" in w for w in why), why


def test_requests_that_drew_nothing_yet_were_slow_are_counted_as_the_reason():
    planted = requests(10, 96, 904, 200, 5)
    kind = tail_kind(10)
    none = drew_names(kind.name)[1]
    # 10% of the undisturbed requests queued past the threshold: the fraction overshoots
    extra = [300.0] * 90
    planted[none] = blocks_of([5.0] * 814 + extra)
    planted[kind.name] = blocks_of([205.0] * 96 + [5.0] * 814 + extra)
    found = slow_fraction(kind, planted, 200, 0.01)
    assert found["agrees"] is False
    entry = entry_with({"n": 10, "variant": TAIL, "slow_fraction": found})
    explain(entry, SETTINGS)
    why = entry["kinds"][kind.name]["why"]
    assert any("drew no slow leaf were over 200 ms anyway" in w for w in why), why


def test_pool_waits_are_a_reason_with_their_p99():
    k = {"n": 16, "variant": TAIL, "predicted": {"p99": {"basis": "leaf", "agrees": False}},
         "pool_wait_us": {"p50": 100.0, "p99": 12_500.0}}
    entry = entry_with(k)
    explain(entry, SETTINGS)
    assert any("12.5 ms at p99" in w for w in entry["kinds"][kind_name(16, TAIL)]["why"])


def test_a_busy_cpu_is_a_reason_only_over_its_limit():
    k = {"n": 16, "variant": TAIL, "predicted": {"p99": {"basis": "leaf", "agrees": False}}}
    busy = entry_with(dict(k), system_cpu_busy=CPU_BUSY_LIMIT + 0.15)
    explain(busy, SETTINGS)
    assert any("85% busy" in w for w in busy["kinds"][kind_name(16, TAIL)]["why"])
    idle = entry_with(dict(k), system_cpu_busy=CPU_BUSY_LIMIT - 0.3)
    explain(idle, SETTINGS)
    assert idle["kinds"][kind_name(16, TAIL)]["why"] == [NO_REASON]


def test_late_sends_are_a_reason_with_their_lateness():
    k = {"n": 16, "variant": TAIL, "predicted": {"p99": {"basis": "leaf", "agrees": False}},
         "p50": {"value": 4000.0}}
    entry = entry_with(k, lateness_p99_us=2500)
    explain(entry, SETTINGS)
    assert any("lateness p99 2.5 ms" in w for w in entry["kinds"][kind_name(16, TAIL)]["why"])


def test_a_miss_with_nothing_planted_finds_no_reason():
    k = {"n": 16, "variant": TAIL, "predicted": {"p99": {"basis": "leaf", "agrees": False}},
         "pool_wait_us": {"p50": 10.0, "p99": 200.0}, "p50": {"value": 4000.0}}
    entry = entry_with(k)
    explain(entry, SETTINGS)
    assert entry["kinds"][kind_name(16, TAIL)]["why"] == [NO_REASON]


def test_the_scenario_draws_what_the_shop_draws():
    """drew_slow replays the shop's draws: over many seeds its share is 1-(1-p)^n."""
    for n, p in ((1, 0.01), (10, 0.01), (100, 0.01), (8, 0.08)):
        share = np.mean([drew_slow(seed, n, p, (), 2) for seed in range(20_000)])
        expected = 1 - (1 - p) ** n
        assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / 20_000), (n, p)
    # only replica 0 slow, certainly: a request is slow exactly when its primary is replica 0
    for seed in range(200):
        assert drew_slow(seed, 1, 1.0, (0,), 2) == (int(draw(seed, 0, -1) * 2) == 0)


def test_hedging_more_than_the_p95_promises_is_explained_by_the_step_leaves():
    from bench.experiments.fanout.analysis import hedging_reasons
    planted = hedging_reasons({"n": 10, "step_leaf_p95_ms": 4.2}, 0.23, 0.05, 1.4, 0.2, None)
    assert "4.20 ms at p95, over the 1.40 ms hedge delay" in planted
    clean = hedging_reasons({"n": 10, "step_leaf_p95_ms": 1.3}, 0.23, 0.05, 1.4, 0.2, None)
    assert clean.endswith(NO_REASON)
    busy = hedging_reasons({"n": 10}, 0.23, 0.05, 1.4, CPU_BUSY_LIMIT + 0.2, None)
    assert "90% busy" in busy


