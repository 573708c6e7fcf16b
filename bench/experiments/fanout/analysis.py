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
from bench.experiments.fanout.theory import (PREDICTED, leaf_prediction, observed_names,
                                             predicted_quantile, verdict_text)
from bench.results.model import QUANTILES, Estimate, Headline, Quantile, Ratio, estimates_to_json
from bench.results.reader import RunData
from bench.results.stats import (Blocks, interval, paired_ratio, percentile_estimate,
                                 percentile_of_counts, resample_weights)

if TYPE_CHECKING:
    from bench.experiments.fanout.experiment import Fanout

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
        blocks = run.blocks(valid, [name for k in every
                                    for name in (k.name, *observed_names(k.name))])
        if not blocks:
            continue
        weights = resample_weights(next(iter(blocks.values())).strata, resamples, rng)
        cpus = len(run.config.get("cpus", {}).get("system") or [1]) or 1
        busy = [s.system_cpu_s / s.duration_s / cpus for s in valid if s.duration_s]
        entry["system_cpu_busy"] = round(float(np.mean(busy)), 3) if busy else None
        entry["lateness_p99_us"] = max(s.lateness_p99_us for s in valid)
        entry["kinds"] = {k.name: kind_entry(k, blocks, weights, settings) for k in every
                          if k.name in blocks}
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
        total = mine.total
        slow = over(mine, delay.slow_ms)
        low, high = binomial_interval(slow, total) if total else (0.0, 1.0)
        expected = 1 - (1 - p) ** kind.n
        out["slow_fraction"] = {"threshold_ms": delay.slow_ms, "measured": slow / total if total else None,
                                "ci99": [low, high], "expected": expected, "samples": total,
                                "agrees": low <= expected <= high}
        plain = blocks.get(kind_name(kind.n, PLAIN))
        if plain is not None and plain.total:  # the same n with nothing injected
            out["slow_fraction"]["plain_over_threshold"] = over(plain, delay.slow_ms) / plain.total
    return out


def over(blocks: Blocks, threshold_ms: float) -> int:
    """How many of the requests in ``blocks`` took at least ``threshold_ms``."""
    return int(blocks.counts.sum(axis=0)[blocks.values >= threshold_ms * 1000].sum())


def explain(entry: dict[str, Any], settings: FanoutSettings) -> None:
    """Say, for each kind whose measurement and prediction disagree, what the measurement
    shows about why: F(t)^n assumes n independent leaves sharing nothing."""
    per = entry["kinds"]
    busy = entry.get("system_cpu_busy")
    for name, k in per.items():
        reasons = []
        missed = [q for q, p in k.get("predicted", {}).items() if p.get("agrees") is False]
        slow = k.get("slow_fraction", {})
        if slow and not slow.get("agrees"):
            missed.append("slow fraction")
        if not missed:
            continue
        predicted = k.get("predicted", {})
        if any(predicted[q].get("basis") == "leaf" for q in missed if q in predicted):
            reasons.append(f"the {k['n']} leaf times of one request are not independent draws "
                           f"from F: they run at the same moment on the same scatter pool and "
                           f"system CPU, so queued one behind another they spread out in order, "
                           f"and delayed together they move together (F(t)^n assumes neither)")
        else:
            reasons.extend(request_basis_reasons(k, per))
        plain_slow = slow.get("plain_over_threshold")
        if slow and not slow.get("agrees") and plain_slow and plain_slow > 0.25 * slow["expected"]:
            reasons.append(f"with nothing injected, {plain_slow:.1%} of n={k['n']} requests already "
                           f"took over {slow['threshold_ms']:g} ms: they queued (a fan-out's n leaf "
                           f"calls arrive at once, so one request's burst delays the others)")
        # What can only make a measurement slower is said only where it was slower.
        above = [q for q in missed if q in k.get("predicted", {})
                 and (k["predicted"][q].get("measured_over_predicted") or [1, 1])[0] > 1]
        if slow and not slow.get("agrees") and (slow.get("measured") or 0) > slow["expected"]:
            above.append("slow fraction")
        if above and busy is not None:
            reasons.append(f"the system's CPU was {busy:.0%} busy over the step on average")
        lateness = entry.get("lateness_p99_us")
        if above and lateness and measured_p50(k) and lateness > 0.1 * measured_p50(k):
            reasons.append(f"the generator sent late (lateness p99 {lateness / 1000:.1f} ms)")
        k["disagrees_on"] = missed
        k["why"] = reasons or ["no cause found in what was measured (the interval may simply "
                               "have missed: at 95% one figure in twenty does)"]


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
        out["expected_extra"] = expected = slow + (0.05 if settings.hedge_ms is None else 0.0)
        if extra > 2 * expected:
            out["why"] = (f"{extra:.0%} of leaf calls were hedged where the injection alone "
                          f"explains about {expected:.0%}: most primaries were late because they "
                          f"queued (for the system's CPU{f', {busy:.0%} busy' if busy else ''}, "
                          f"and the scatter pool), not because a replica was slow, so each "
                          f"backup added load to what was already the bottleneck")
    return out


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
                rows.append(Headline(
                    f"slow requests at n={top} (leaf tail p={settings.tail.slow_p:g}), {placement}",
                    "text", text=f"{slow['measured']:.1%} ({lo:.1%}-{hi:.1%}, 99%)",
                    verdict=f"{'agrees' if slow['agrees'] else 'DISAGREES'}: 1-(1-p)^n = "
                            f"{slow['expected']:.1%}"))
        h = e.get("hedging") or {}
        red = h.get("p99.9", {}).get("reduction")
        if red:
            extra = h.get("extra_requests")
            rows.append(Headline(f"p99.9 unhedged / hedged at n={h['n']}, one slow replica, "
                                 f"{placement}", "ratio", ratio=Ratio.from_json(red),
                                 verdict="" if extra is None else f"{extra:.1%} extra leaf calls"))
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
