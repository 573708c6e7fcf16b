"""The fan-out experiment's analysis: measured percentiles per kind, F(t)^n beside them,
1-(1-p)^n beside the slow fractions, hedging's effect, and why a prediction missed.

Every figure is read from the same block-bootstrap resamples (bench/results/stats.py), so the
measured-to-predicted ratio of a resample compares the same seconds of the same trials.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import beta

from bench.experiments.base import Analysis, validity
from bench.experiments.fanout.experiment import (CONFIDENCE_SLOW, HEDGED, PLAIN, SLOW_REPLICA, TAIL,
                                                 FanoutSettings, Kind, kind_name, kinds)
from bench.experiments.fanout.theory import (HEDGE_SHARE, PREDICTED, drew_names, hedge_delay_name,
                                             hedge_late_name, leaf_prediction, observed_names,
                                             predicted_quantile, verdict_text, wait_name)
from bench.results.model import QUANTILES, Estimate, Headline, Quantile, Ratio, estimates_to_json
from bench.results.reader import RunData
from bench.results.stats import (Blocks, interval, paired_ratio, percentile_estimate,
                                 percentile_of_counts, resample_weights)

if TYPE_CHECKING:
    from bench.experiments.fanout.experiment import Fanout

# A slow fraction tests 1-(1-p)^n only where a request that drew no slow leaf stays this many
# times under the threshold (the injected delay): else "slow" counts plain requests too.
THRESHOLD_CLEARANCE = 1.5
CPU_BUSY_LIMIT = 0.7  # over this utilisation, queueing for the CPU grows steeply (M/M/1: 1/(1-u))
LATENESS_SHARE = 0.1  # sends later than this share of a kind's p50 are part of its latency
HEDGE_SHORTFALL = 0.02  # fewer extra calls than expected by more than this is explained
POOL_WAIT_FLOOR_US = 1000  # a p99 wait for a pool thread under 1 ms is not a cause
NO_REASON = ("no reason found in what was measured (pool waits, CPU, the generator's "
             "lateness and the requests' own draws are all within their limits; at 95% one "
             "interval in twenty misses by chance)")

def slow_probability(kind: Kind, settings: FanoutSettings) -> float | None:
    """The probability that one leaf call of ``kind`` draws the slow delay (None: no tail)."""
    if kind.variant == TAIL:
        return settings.tail.slow_p
    if kind.variant == SLOW_REPLICA:
        delay = settings.slow_replica
        share = (len(set(delay.slow_replicas) & set(range(settings.replicas))) / settings.replicas
                 if delay.slow_replicas else 1.0)
        return delay.slow_p * share  # the primary replica is drawn uniformly
    return None


def binomial_interval(k: int, total: int, confidence: float = CONFIDENCE_SLOW) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion k/total."""
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, total - k + 1))
    high = 1.0 if k == total else float(beta.ppf(1 - tail, k + 1, total - k))
    return low, high


def analyse_fanout(experiment: "Fanout", run: RunData, resamples: int, seed: int) -> Analysis:
    rng = np.random.default_rng(seed)
    settings = run.settings_of(experiment)
    every = kinds(settings)
    per: dict[str, Any] = {}
    warnings: list[str] = []
    for placement in run.placements:
        steps = run.steps_of(experiment.name, placement)
        if not steps:
            continue
        valid = [s for s in steps if s.valid]
        entry: dict[str, Any] = {
            **validity(steps),
            "hedge_ms": steps[0].extra.get("hedge_ms"),
            "leaves": {k.removeprefix("leaf_"): v for k, v in steps[0].extra.items()
                       if k.startswith("leaf_")}}
        per[placement] = entry
        if not valid:
            continue
        blocks = run.blocks(valid, [name for k in every for name in
                                    (k.name, *observed_names(k.name), wait_name(k.name),
                                     *drew_names(k.name), hedge_late_name(k.name),
                                     hedge_delay_name(k.name))])
        if not blocks:
            continue
        weights = resample_weights(next(iter(blocks.values())).strata, resamples, rng)
        cpus = len(run.config.get("cpus", {}).get("system") or [1]) or 1
        busy = [s.system_cpu_s / s.duration_s / cpus for s in valid if s.duration_s]
        entry["system_cpu_busy"] = round(float(np.mean(busy)), 3) if busy else None
        entry["lateness_p99_us"] = max(s.lateness_p99_us for s in valid)
        entry["kinds"] = {k.name: kind_entry(k, blocks, weights, settings) for k in every
                          if k.name in blocks}
        entry["interference"] = interference(entry["kinds"])
        explain(entry, settings)
        entry["hedging"] = hedging(run, valid, blocks, weights, settings, entry["system_cpu_busy"])
    result = {"title": experiment.title, "settings": run.settings(experiment.name),
              "placements": per, "ratios": paired_p50_ratios(run, experiment.name, every)}
    nothing = bool(per) and not any(e.get("valid_trials") for e in per.values())
    return Analysis(result, headlines(result, settings), warnings, rests_on_nothing=nothing)


def paired_p50_ratios(run: RunData, experiment: str, every: list[Kind]) -> dict[str, Any]:
    """Per pair of placements and kind: the paired ratio of p50 over trials (trial t of both
    ran back to back with the same seeds, so the same injected delays)."""
    per_trial: dict[str, dict[str, dict[int, float]]] = {}
    for placement in run.placements:
        for step in run.steps_of(experiment, placement, valid_only=True):
            for kind in every:
                h = run.histogram(step, [kind.name])
                if h.get_total_count():
                    per_trial.setdefault(placement, {}).setdefault(kind.name, {})[step.key.trial] = \
                        float(h.get_value_at_percentile(50))
    out: dict[str, Any] = {}
    for other, base in run.pairs():
        a, b = per_trial.get(base, {}), per_trial.get(other, {})
        out[f"{other}/{base}"] = {
            kind.name: paired_ratio([a.get(kind.name, {}).get(t) for t in trials],
                                    [b.get(kind.name, {}).get(t) for t in trials]).to_json()
            for kind in every
            if (trials := sorted(set(a.get(kind.name, {})) & set(b.get(kind.name, {}))))}
    return out


def kind_entry(kind: Kind, blocks: Mapping[str, Blocks], weights: np.ndarray,
               settings: FanoutSettings) -> dict[str, Any]:
    """Measured percentiles, F(t)^n beside them, and the slow fraction, for one kind. Each
    kind's (and its n = 1 base's) resampled histograms are computed once and read for every
    percentile: the bootstrap is a matrix product per kind, not per percentile."""
    mine = blocks[kind.name]
    resampled_mine = weights @ mine.counts
    out: dict[str, Any] = {"n": kind.n, "variant": kind.variant, **estimates_to_json(
        {q.key: percentile_estimate(mine, q, weights, resampled_mine) for q in QUANTILES})}
    leaves, slowest = (blocks.get(name) for name in observed_names(kind.name))
    base = blocks.get(kind.base())
    if kind.variant != HEDGED and leaves is not None and leaves.total and slowest is not None:
        out["predicted"] = leaf_prediction(kind.n, leaves, slowest, weights)
    elif kind.variant != HEDGED and base is not None and base.total:
        # a run from before the scatterer timed its leaves: F is the measured n = 1 requests
        resampled_base = weights @ base.counts
        out["predicted"] = {}
        for q in QUANTILES:
            if q.key not in PREDICTED:
                continue
            q_one = predicted_quantile(q.q, kind.n)
            point = float(percentile_of_counts(base.counts.sum(axis=0), base.values, q_one)[0])
            boot_predicted = percentile_of_counts(resampled_base, base.values, q_one)
            boot_measured = percentile_of_counts(resampled_mine, mine.values, q.q)
            ratio = interval(boot_measured / boot_predicted)
            measured = Estimate.from_json(out.get(q.key))
            supported = (measured.supported and base.total >= Quantile(q.key, q_one).min_samples)
            out["predicted"][q.key] = {
                "basis": "n=1 requests", "value": point, "ci95": interval(boot_predicted),
                "measured_over_predicted": None if ratio is None else list(ratio),
                "supported": supported,
                "agrees": None if ratio is None or not supported else ratio[0] <= 1.0 <= ratio[1]}
    p = slow_probability(kind, settings)
    if p is not None:
        delay = settings.tail if kind.variant == TAIL else settings.slow_replica
        out["slow_fraction"] = slow_fraction(kind, blocks, delay.slow_ms, p)
    waits = blocks.get(wait_name(kind.name))
    if waits is not None and waits.total:
        every = waits.counts.sum(axis=0)
        out["pool_wait_us"] = {key: float(percentile_of_counts(every, waits.values, q)[0])
                               for key, q in (("p50", 50.0), ("p99", 99.0))}
    return out


def interference(per: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the wide fan-outs of the step cost its narrow requests, which share their pool:
    the pool waits (µs) of the n = 1 kinds' leaf calls beside those of the widest kind. A
    finding, not a fault: one process's bounded pool serves every request at once."""
    narrow = {name: k["pool_wait_us"] for name, k in per.items()
              if k.get("n") == 1 and k.get("pool_wait_us")}
    wide = max((k for k in per.values() if k.get("pool_wait_us")), key=lambda k: k["n"],
               default=None)
    if not narrow or wide is None or wide["n"] == 1:
        return None
    return {"narrow": narrow, "widest_n": wide["n"], "widest": wide["pool_wait_us"]}


def slow_fraction(kind: Kind, blocks: Mapping[str, Blocks], threshold_ms: float,
                  p: float) -> dict[str, Any]:
    """The share of ``kind``'s requests slower than the injected delay, against 1-(1-p)^n.

    A request that drew a slow leaf takes at least ``threshold_ms`` (the delay itself), so
    the measured share tests the theory only where a request that drew none stays well under
    it: the injected share (which requests drew one, from their seeds) and the latency of
    those that drew none are read beside it, and without that clearance there is no verdict."""
    mine = blocks[kind.name]
    total = mine.total
    slow = over(mine, threshold_ms)
    low, high = binomial_interval(slow, total) if total else (0.0, 1.0)
    expected = 1 - (1 - p) ** kind.n
    out: dict[str, Any] = {"threshold_ms": threshold_ms, "measured": slow / total if total else None,
                           "ci99": [low, high], "expected": expected, "samples": total}
    drew, none = (blocks.get(name) for name in drew_names(kind.name))
    clear = None
    if drew is not None and none is not None and drew.total + none.total:
        d, u = drew.total, none.total
        i_low, i_high = binomial_interval(d, d + u)
        out["injected"] = {"share": d / (d + u), "ci99": [i_low, i_high],
                           "agrees": i_low <= expected <= i_high}
        if u:
            key, q = undisturbed_quantile(u)
            undisturbed = float(percentile_of_counts(none.counts.sum(axis=0), none.values, q)[0])
            out["undisturbed"] = {"quantile": key, "ms": undisturbed / 1000, "requests": u}
            out["drew_none_over"] = over(none, threshold_ms) / u
            clear = undisturbed / 1000 * THRESHOLD_CLEARANCE <= threshold_ms
        if d:
            out["drew_slow_under"] = (d - over(drew, threshold_ms)) / d
    else:  # a run from before the scenario told the draws apart
        plain = blocks.get(kind_name(kind.n, PLAIN))
        if plain is not None and plain.total:  # the same n with nothing injected
            out["plain_over_threshold"] = over(plain, threshold_ms) / plain.total
    out["threshold_clear"] = clear
    out["agrees"] = None if clear is False else bool(low <= expected <= high)
    return out


def undisturbed_quantile(requests: int) -> tuple[str, float]:
    """The highest of p99 and p90 that ``requests`` support (the 10/(1-q) rule), else p50."""
    for key, q in (("p99", 99.0), ("p90", 90.0)):
        if requests >= Quantile(key, q).min_samples:
            return key, q
    return "p50", 50.0


def over(blocks: Blocks, threshold_ms: float) -> int:
    """How many of the requests in ``blocks`` took at least ``threshold_ms``."""
    return int(blocks.counts.sum(axis=0)[blocks.values >= threshold_ms * 1000].sum())


def explain(entry: dict[str, Any], settings: FanoutSettings) -> None:
    """Say, for each kind whose measurement and prediction disagree (and each whose slow
    fraction has no verdict), what the run shows about why: each reason only where its
    number crosses its limit, the number with it; "no reason found" when none does."""
    per = entry["kinds"]
    busy = entry.get("system_cpu_busy")
    lateness = entry.get("lateness_p99_us")
    for name, k in per.items():
        missed = [q for q, p in k.get("predicted", {}).items() if p.get("agrees") is False]
        slow = k.get("slow_fraction") or {}
        if slow.get("agrees") is False:
            missed.append("slow fraction")
        if not missed and slow.get("threshold_clear") is not False:
            continue
        reasons = slow_reasons(k, slow)
        if any((k.get("predicted", {}).get(q) or {}).get("basis") != "leaf"
               for q in missed if q in k.get("predicted", {})):
            reasons.extend(request_basis_reasons(k, per))
        wait = (k.get("pool_wait_us") or {}).get("p99")
        base_us = 1000 * {TAIL: settings.tail.base_ms, SLOW_REPLICA: settings.slow_replica.base_ms,
                          HEDGED: settings.slow_replica.base_ms}.get(k.get("variant"), 0.0)
        if wait is not None and wait > max(POOL_WAIT_FLOOR_US, base_us):
            reasons.append(f"its leaf calls waited for a thread of the scatter's pool, shared "
                           f"with every other request: {wait / 1000:.1f} ms at p99, over a "
                           f"leaf's own {base_us / 1000:g} ms (so its n leaves are not "
                           f"independent draws: the later ones queue behind the earlier)")
        if busy is not None and busy > CPU_BUSY_LIMIT:
            reasons.append(f"the system's CPU was {busy:.0%} busy over the step, over the "
                           f"{CPU_BUSY_LIMIT:.0%} at which requests queue for it")
        p50 = measured_p50(k)
        if lateness and p50 and lateness > LATENESS_SHARE * p50:
            reasons.append(f"the generator sent late: lateness p99 {lateness / 1000:.1f} ms, "
                           f"over {LATENESS_SHARE:.0%} of this kind's p50 ({p50 / 1000:.1f} ms)")
        k["disagrees_on"] = missed
        k["why"] = reasons or [NO_REASON]


def slow_reasons(k: Mapping[str, Any], slow: Mapping[str, Any]) -> list[str]:
    """Why a slow fraction missed or cannot be judged, from the requests' own draws."""
    out = []
    undisturbed = slow.get("undisturbed") or {}
    if slow.get("threshold_clear") is False:
        out.append(f"no verdict on the slow fraction: the requests that drew no slow leaf "
                   f"already take {undisturbed['ms']:.1f} ms at {undisturbed['quantile']}, "
                   f"not {THRESHOLD_CLEARANCE:g}x under the {slow['threshold_ms']:g} ms "
                   f"threshold, so \"slow\" would count requests that drew nothing slow")
    injected = slow.get("injected") or {}
    if injected.get("agrees") is False:
        low, high = injected["ci99"]
        out.append(f"the requests' own draws gave {injected['share']:.1%} ({low:.1%}-{high:.1%}) "
                   f"a slow leaf, against {slow['expected']:.1%}: the injection itself "
                   f"differs from its setting")
    over_share = slow.get("drew_none_over") or 0.0
    if slow.get("agrees") is False and over_share > 0:
        out.append(f"{over_share:.1%} of the requests that drew no slow leaf were over "
                   f"{slow['threshold_ms']:g} ms anyway")
    under_share = slow.get("drew_slow_under") or 0.0
    if slow.get("agrees") is False and under_share > 0:
        out.append(f"{under_share:.1%} of the requests that drew a slow leaf finished under "
                   f"{slow['threshold_ms']:g} ms (a hedge or an error answered first)")
    plain_slow = slow.get("plain_over_threshold")
    if slow.get("agrees") is False and plain_slow:
        out.append(f"with nothing injected, {plain_slow:.1%} of n={k['n']} requests already "
                   f"took over {slow['threshold_ms']:g} ms")
    return out


def request_basis_reasons(k: Mapping[str, Any], per: Mapping[str, Any]) -> list[str]:
    """Why a prediction from whole n = 1 requests (runs from before the scatterer timed its
    leaves) missed."""
    reasons = []
    missed = [q for q, p in k.get("predicted", {}).items() if p.get("agrees") is False]
    plain = per.get(kind_name(k["n"], PLAIN), {}).get("predicted", {}).get("p50", {})
    ratio = plain.get("measured_over_predicted")
    if k["n"] > 1 and ratio and ratio[0] > 1:
        reasons.append(f"without any injected delay n={k['n']} already takes "
                       f"{ratio[0]:.2f}-{ratio[1]:.2f}x the F(t)^n prediction at p50: the n "
                       f"leaf calls are not independent (they share the system's CPU, the "
                       f"scatter pool and, split, the gateway), so waiting for them queues")
    below = [q for q in missed if (k["predicted"][q].get("measured_over_predicted") or [1, 1])[1] < 1]
    if below and k["n"] > 1:
        reasons.append(f"measured under the prediction at {', '.join(below)}: F comes from "
                       f"whole n=1 requests, and what such a request pays once (its own HTTP "
                       f"and token check, and any wait behind other requests) F(t)^n counts "
                       f"as if each of the n leaves paid it independently, so it overshoots")
    return reasons


def measured_p50(kind: Mapping[str, Any]) -> float | None:
    return (kind.get("p50") or {}).get("value")


def hedging(run: RunData, valid: list, blocks: Mapping[str, Blocks], weights: np.ndarray,
            settings: FanoutSettings, busy: float | None) -> dict[str, Any] | None:
    """p99 and p99.9 without and with hedging at ``hedge_n``, their ratio per resample, and
    the extra leaf calls hedging sent (from the scatterer's own counts) against what the
    injection alone would cause: the primaries drawing the slow delay, plus the 5% of
    calls over a p95 when the hedge delay is the measured p95."""
    plain_name = kind_name(settings.hedge_n, SLOW_REPLICA)
    hedged_name = kind_name(settings.hedge_n, HEDGED)
    if plain_name not in blocks or hedged_name not in blocks:
        return None
    out: dict[str, Any] = {"n": settings.hedge_n}
    plain, with_hedge = blocks[plain_name], blocks[hedged_name]
    resampled_plain, resampled_hedged = weights @ plain.counts, weights @ with_hedge.counts
    for q in (QUANTILES[2], QUANTILES[3]):
        a = percentile_of_counts(resampled_plain, plain.values, q.q)
        b = percentile_of_counts(resampled_hedged, with_hedge.values, q.q)
        unhedged = percentile_estimate(plain, q, weights, resampled_plain)
        hedged = percentile_estimate(with_hedge, q, weights, resampled_hedged)
        ratio = interval(a / b)
        out[q.key] = {"unhedged": unhedged.to_json(), "hedged": hedged.to_json(),
                      "reduction": Ratio(unhedged.value / hedged.value if hedged.value else None,
                                         *(ratio or (None, None)),
                                         supported=unhedged.supported and hedged.supported).to_json()}
    calls: dict[str, int] = {}
    for counted in run.calls(valid).values():
        for (kind, name), n in counted.items():
            if kind == "leaf_call":
                calls[name] = calls.get(name, 0) + n
    if calls.get("hedged"):
        out["extra_requests"] = extra = calls.get("backup", 0) / calls["hedged"]
        out["leaf_calls"] = calls
        slow = slow_probability(Kind("", settings.hedge_n, SLOW_REPLICA), settings) or 0.0
        # Hedged after the leaf's p95, 5% of primaries are later than it by definition (the
        # slow ones among them), whatever the injection: Dean and Barroso's "about 5%". With a
        # delay of the user's, about the slow share is (the delay between base and slow).
        out["expected_extra"] = expected = HEDGE_SHARE if settings.hedge_ms is None else slow
        hedge = settings.hedge_ms
        delays = blocks.get(hedge_delay_name(hedged_name))
        if delays is not None and delays.total:  # the delays the scatter waited, per request
            every = delays.counts.sum(axis=0)
            out["hedge_delay_ms"] = {key: float(percentile_of_counts(every, delays.values, q)[0])
                                     / 1000 for key, q in (("p5", 5.0), ("p50", 50.0),
                                                           ("p95", 95.0))}
            hedge = out["hedge_delay_ms"]["p50"]
        leaves = blocks.get(observed_names(plain_name)[0])
        if leaves is not None and leaves.total:
            out["step_leaf_p95_ms"] = float(percentile_of_counts(
                leaves.counts.sum(axis=0), leaves.values, 95.0)[0]) / 1000
        late = blocks.get(hedge_late_name(hedged_name))
        if late is not None and late.total:
            every = late.counts.sum(axis=0)
            out["hedge_late_us"] = {key: float(percentile_of_counts(every, late.values, q)[0])
                                    for key, q in (("p50", 50.0), ("p99", 99.0))}
        if extra > 2 * expected:
            out["why"] = hedging_reasons(out, extra, expected, hedge, busy,
                                         blocks.get(wait_name(hedged_name)))
        elif extra < expected - HEDGE_SHORTFALL and out.get("hedge_late_us"):
            lag = out["hedge_late_us"]
            out["why"] = (f"{extra:.1%} of leaf calls were hedged where about {expected:.0%} "
                          f"would be: where a primary was still out at the {hedge:.2f} ms delay, "
                          f"the hedge looked {lag['p50'] / 1000:.2f} ms after it at the "
                          f"median ({lag['p99'] / 1000:.2f} ms at p99), and a primary that "
                          f"answered meanwhile got no backup (the looking thread must get the "
                          f"interpreter lock back from the leaves' threads)")
    return out


def hedging_reasons(out: Mapping[str, Any], extra: float, expected: float, hedge_ms: float | None,
                    busy: float | None, waits: Blocks | None) -> str:
    """Why more leaf calls were hedged than the hedge delay promised, from the run."""
    reasons = []
    p95 = out.get("step_leaf_p95_ms")
    if p95 is not None and hedge_ms and p95 > hedge_ms:
        reasons.append(f"under the step's load one leaf call at n={out['n']} took {p95:.2f} ms at "
                       f"p95, over the {hedge_ms:.2f} ms hedge delay, so more than 5% of "
                       f"primaries outlived it")
    if waits is not None and waits.total:
        wait = float(percentile_of_counts(waits.counts.sum(axis=0), waits.values, 99.0)[0])
        if wait > POOL_WAIT_FLOOR_US:
            reasons.append(f"the hedged requests' leaf calls waited {wait / 1000:.1f} ms at p99 "
                           f"for a pool thread, and the hedge's clock runs while they wait")
    if busy is not None and busy > CPU_BUSY_LIMIT:
        reasons.append(f"the system's CPU was {busy:.0%} busy, over {CPU_BUSY_LIMIT:.0%}")
    return (f"{extra:.0%} of leaf calls were hedged where about {expected:.0%} would be: "
            + ("; ".join(reasons) if reasons else NO_REASON))


def headlines(result: Mapping[str, Any], settings: FanoutSettings) -> list[Headline]:
    rows: list[Headline] = []
    top = max(settings.ns)
    for placement, e in result["placements"].items():
        if not e.get("valid_trials"):
            rows.append(Headline(f"fan-out, {placement}", "text", text="no valid trial",
                                 verdict="nothing valid"))
            continue
        rows.extend(compounding_headline(e, top, placement))
        k = e.get("kinds", {}).get(kind_name(top, TAIL))
        if k:
            slow = k.get("slow_fraction")
            if slow and slow.get("measured") is not None:
                lo, hi = slow["ci99"]
                said = {True: "agrees", False: "DISAGREES"}.get(
                    slow["agrees"], "no verdict (threshold not clear of plain requests)")
                rows.append(Headline(
                    f"slow requests at n={top} (leaf tail p={settings.tail.slow_p:g}), {placement}",
                    "text", text=f"{slow['measured']:.1%} ({lo:.1%}-{hi:.1%}, 99%)",
                    verdict=f"{said}: 1-(1-p)^n = {slow['expected']:.1%}"))
        h = e.get("hedging") or {}
        red = h.get("p99.9", {}).get("reduction")
        if red:
            extra = h.get("extra_requests")
            rows.append(Headline(f"p99.9 unhedged / hedged at n={h['n']}, one slow replica, "
                                 f"{placement}", "ratio", ratio=Ratio.from_json(red),
                                 verdict="" if extra is None else
                                 f"{extra:.1%} extra leaf calls (about "
                                 f"{h['expected_extra']:.0%} expected)"))
    return rows


def compounding_headline(entry: Mapping[str, Any], top: int, placement: str) -> list[Headline]:
    """p99 (or the highest percentile with enough samples) of the slowest of ``top`` leaves
    beside F(t)^n, for the plain kind (else the tail kind), with the equivalence verdict."""
    for variant in (PLAIN, TAIL):
        k = entry.get("kinds", {}).get(kind_name(top, variant))
        if k and k.get("predicted"):
            break
    else:
        return []
    predicted = k["predicted"]
    key = next((q for q in ("p99", "p90", "p50") if (predicted.get(q) or {}).get("supported")),
               "p99")
    pred = predicted.get(key) or {}
    if pred.get("basis") != "leaf":  # a run from before leaf timings: its tables say it
        return []
    measured = Estimate.from_json(pred.get("measured"))
    verdict = verdict_text(pred)
    if pred.get("value"):
        verdict += f"; F(t)^n {pred['value'] / 1000:.1f} ms"
    return [Headline(f"{key} of the slowest of n={top} leaves ({k['variant']}), {placement}",
                     "latency", measured, verdict=verdict)]
