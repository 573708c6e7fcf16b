"""The journey's figures: one estimand each, pooled over the trials that count.

A rung's trial *stands* when it was measured in every placement and the harness spoiled none
of its steps (``StepResult.spoiled``: late sends, a busy generator); a trial that does not
stand was not measured, whatever the system did. A placement *sustains* a rung when every
standing trial of it was valid there (steady, errors within bounds, the rate kept).

Every figure of a placement at a rung is pooled over its valid standing trials: a
percentile is read from their histograms added together, CPU per request is all their CPU
over all their requests, memory the mean of their peaks. A ratio between placements is the
ratio of the two pooled figures over the same standing trials, and exists only where both
placements sustain the rung, so the ratio in the headline is the quotient of the two numbers
in the table. Intervals: the delete-one-trial jackknife on the log scale
(``bench.results.stats.over_trials``, ``ratio_over_trials``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.experiments.base import validity
from bench.load.generator import MAX_ERROR_RATE
from bench.results import hdr
from bench.results.model import QUANTILES, Estimate, Quantile, Ratio, StepResult, estimates_to_json
from bench.results.reader import RunData
from bench.results.stats import (Blocks, leave_one_out_percentiles, leave_one_out_ratio,
                                 over_trials, percentile_of_counts, ratio_over_trials)

RATIO_FIGURES = ("p50", "p99", "cpu_ms_per_request", "pss_mib")


@dataclass
class Pooled:
    """A placement's valid standing trials at one rung, in trial order, as the jackknife
    wants them: one row per trial."""

    trials: list[int]
    counts: np.ndarray  # [trial, bucket]: every request of the mix
    values: np.ndarray  # µs per bucket
    cpu_ms: list[float]  # the system's CPU-ms per trial
    served: list[int]  # requests the system served per trial
    memory_mib: list[float]  # peak PSS (else RSS) per trial

    def percentile(self, q: float) -> tuple[float, np.ndarray]:
        return leave_one_out_percentiles(self.counts, self.values, q)

    def figure(self, name: str) -> tuple[float, np.ndarray]:
        """(pooled value, values with each trial left out) of a RATIO_FIGURES name."""
        if name == "p50":
            return self.percentile(50.0)
        if name == "p99":
            return self.percentile(99.0)
        if name == "cpu_ms_per_request":
            return leave_one_out_ratio(self.cpu_ms, self.served)
        return leave_one_out_ratio(self.memory_mib, [1.0] * len(self.memory_mib))


def trial_rows(blocks: Blocks) -> tuple[list[int], np.ndarray]:
    """Per-second Blocks added up per trial: (trials in order, counts[trial, bucket])."""
    trials = sorted({int(t) for t in blocks.strata})
    if not trials:
        return [], np.zeros((0, len(blocks.values)), np.int64)
    return trials, np.stack([blocks.counts[blocks.strata == t].sum(axis=0) for t in trials])


def standing_trials(by_placement: Mapping[str, Sequence[StepResult]]) -> list[int]:
    """The trials measured in every placement with no step spoiled by the harness."""
    measured = [{s.key.trial for s in steps} for steps in by_placement.values()]
    common = set.intersection(*measured) if measured else set()
    spoiled = {s.key.trial for steps in by_placement.values() for s in steps if s.spoiled}
    return sorted(common - spoiled)


def percentile_estimates(counts: np.ndarray, values: np.ndarray,
                         quantiles: Sequence[Quantile] = QUANTILES) -> dict[str, Estimate]:
    """Each quantile pooled over the rows of ``counts`` with its jackknife interval;
    unsupported under the quantile's ``min_samples`` (of all rows together)."""
    total = int(counts.sum())
    if total == 0:
        return {q.key: Estimate(None, samples=0) for q in quantiles}
    return {q.key: over_trials(*leave_one_out_percentiles(counts, values, q.q), samples=total,
                               supported=total >= q.min_samples)
            for q in quantiles}


def rung_entry(run: RunData, steps: list[StepResult], standing: list[int],
               names: Sequence[str]) -> tuple[dict[str, Any], Pooled | None]:
    """One placement at one rung: its validity over every step, and its figures pooled over
    its valid standing trials (with the Pooled rows a ratio needs)."""
    counted = sorted((s for s in steps if s.key.trial in standing and s.valid),
                     key=lambda s: s.key.trial)
    in_standing = [s for s in steps if s.key.trial in standing]
    entry: dict[str, Any] = {
        **validity(steps),
        "standing_trials": len(standing),
        "counted_trials": [s.key.trial for s in counted],
        "sustained": bool(in_standing) and all(s.valid for s in in_standing),
        "not_measured": [f"trial {s.key.trial + 1}" for s in steps if s.key.trial not in standing],
        # what the system failed at, in the trials that count (why it did not sustain the rate)
        "failed": [f"trial {s.key.trial + 1}: {'; '.join(s.invalid_reasons)}"
                   for s in in_standing if not s.valid],
        "scheduled_rate": _mean([s.scheduled / s.duration_s for s in steps if s.duration_s]),
        "achieved_rate": _mean([s.completed_in_time / s.duration_s for s in steps if s.duration_s]),
        "completed": sum(s.completed for s in counted),
        "censored": sum(s.censored for s in counted),
        "error_rate": (sum(s.errors + s.censored for s in counted) / sum(s.scheduled for s in counted)
                       if counted and sum(s.scheduled for s in counted) else None),
        "lateness_p99_us": max((s.lateness_p99_us for s in steps), default=None),
        "generator_cpu_max": max((s.generator_cpu for s in steps), default=None)}
    if not counted:
        entry.update(latency=estimates_to_json({q.key: Estimate(None) for q in QUANTILES}),
                     per_name={}, cpu_ms_per_request=Estimate(None).to_json(),
                     pss_mib=Estimate(None).to_json())
        return entry, None
    blocks = run.blocks(counted, names)
    first = blocks[names[0]]
    everything = Blocks(sum(b.counts for b in blocks.values()), first.values, first.strata)
    trials, counts = trial_rows(everything)
    entry["latency"] = estimates_to_json(percentile_estimates(counts, everything.values))
    entry["per_name"] = {n: estimates_to_json(percentile_estimates(trial_rows(b)[1], b.values))
                         for n, b in blocks.items() if b.total}
    memory = [float(s.system_pss_mib if s.system_pss_mib is not None else s.system_rss_mib or 0)
              for s in counted]
    pooled = Pooled(trials, counts, everything.values,
                    [s.system_cpu_s * 1000 for s in counted], [s.served for s in counted], memory)
    entry["cpu_ms_per_request"] = over_trials(*pooled.figure("cpu_ms_per_request")).to_json()
    entry["pss_mib"] = over_trials(*pooled.figure("pss_mib")).to_json()
    entry["memory_kind"] = "PSS" if all(s.system_pss_mib is not None for s in counted) else "RSS"
    # each counted trial's own p50, CPU and memory (per-trial figures a trial supports), for
    # tests across runs; no per-trial p99 (a trial has too few samples for one)
    entry["by_trial"] = {
        "p50": {str(t): float(percentile_of_counts(row, everything.values, 50.0)[0])
                for t, row in zip(trials, counts)},
        "cpu_ms_per_request": {str(s.key.trial): s.cpu_ms_per_request for s in counted
                               if s.cpu_ms_per_request is not None},
        "pss_mib": {str(s.key.trial): m for s, m in zip(counted, memory) if m}}
    return entry, pooled


def ratios_at(per: Mapping[str, Mapping[str, Any]], pooled: Mapping[str, Pooled | None],
              under: str, other: str, label: str) -> dict[str, Any]:
    """``other`` over ``under`` at one rung: each RATIO_FIGURES figure, or why there is none."""
    a, b = per[under].get(label), per[other].get(label)
    if a is None or b is None:
        return {}
    lacking = [p for p, e in ((under, a), (other, b)) if not e["sustained"]]
    if lacking or pooled.get(under) is None or pooled.get(other) is None:
        why = (f"{' and '.join(lacking)} did not sustain this rate" if lacking
               else "no trial stood in both placements")
        return {fig: Ratio(None, note=why).to_json() for fig in RATIO_FIGURES}
    pa, pb = pooled[under], pooled[other]
    out = {}
    for fig in RATIO_FIGURES:
        supported = True
        if fig == "pss_mib" and a.get("memory_kind") != b.get("memory_kind"):
            # a deployed placement's memory is RSS from /metrics, a started one's PSS
            out[fig] = Ratio(None, note=f"not comparable: {b.get('memory_kind')} of {other} "
                                        f"against {a.get('memory_kind')} of {under}").to_json()
            continue
        if fig in ("p50", "p99"):
            supported = all(Estimate.from_json(e["latency"].get(fig)).supported for e in (a, b))
        out[fig] = ratio_over_trials(pa.figure(fig), pb.figure(fig), supported).to_json()
    return out


# The headline compares the placements at a rate at most this fraction of the highest rate
# every placement sustained: under half its capacity a server's queue stays short, so the
# comparison is of the seam's cost and not of two queues (see docs/results.md).
HEADLINE_MARGIN = 2.0


def headline_rung(per: Mapping[str, Mapping[str, Any]], ladder: list[tuple[str, float]]
                  ) -> tuple[str | None, str]:
    """The rung the placements are compared at, and why: the highest rung every placement
    sustained at most 1/HEADLINE_MARGIN of the highest rate every placement sustained (a
    load both carry with a margin); else the lowest rung all sustained, said to have no
    margin shown; None when no rung was sustained by all."""
    def all_sustain(label: str) -> bool:
        return bool(per) and all(label in rungs and rungs[label]["sustained"] for rungs in per.values())

    sustained = [(label, rate) for label, rate in ladder if all_sustain(label)]
    if not sustained:
        return None, "no rate was sustained by every placement"
    top = max(rate for _, rate in sustained)
    with_margin = [(label, rate) for label, rate in sustained if rate * HEADLINE_MARGIN <= top]
    if with_margin:
        label, rate = max(with_margin, key=lambda x: x[1])
        return label, (f"every placement sustained {top:g} req/s, at least "
                       f"{HEADLINE_MARGIN:g}x this rate")
    label, rate = min(sustained, key=lambda x: x[1])
    return label, (f"no margin shown: no placement was shown to sustain {HEADLINE_MARGIN:g}x "
                   "this rate")


def not_sustained_because(rung: Mapping[str, Any]) -> str:
    """Why a placement did not sustain a rung: the system's failures in the trials that
    count; the trials the harness spoiled are named apart, as not measured (an older run
    without that split gives every invalid trial)."""
    failed = rung.get("failed", rung.get("invalid", []))
    because = "; ".join(failed) or "see the table"
    if "failed" in rung and rung.get("not_measured"):
        because += f" (not measured: {', '.join(rung['not_measured'])})"
    return because


def capacity(rungs: Mapping[str, Mapping[str, Any]], ladder: list[tuple[str, float]]) -> dict[str, Any]:
    """The highest rung a placement sustained, with its p99, and the rung above it."""
    measured = [(label, rate) for label, rate in ladder if label in rungs and rungs[label]["standing_trials"]]
    held = [(label, rate) for label, rate in measured if rungs[label]["sustained"]]
    if not held:
        return {"rate": None, "text": "no rate sustained" if measured else "not measured"}
    label, rate = held[-1]
    higher = [(lab, r) for lab, r in measured if r > rate]
    text = (f"at least {rate:g} req/s (the top of the ladder)" if not higher else
            f"{rate:g} req/s ({higher[0][1]:g} req/s not sustained: "
            f"{not_sustained_because(rungs[higher[0][0]])})")
    return {"rate": rate, "rung": label, "text": text,
            "p99": rungs[label].get("latency", {}).get("p99")}


def throughput_at_objective(rungs: Mapping[str, Mapping[str, Any]], ladder: list[tuple[str, float]],
                            objective_us: float) -> dict[str, Any]:
    """Where on the ladder p99 crosses the objective. A rung no trial of which stood is *not
    measured* (the harness spoiled it: no verdict on the system). A rung the placement did
    not sustain, or whose errors (with censored requests) exceed ``MAX_ERROR_RATE``,
    *misses*. Otherwise the p99 interval decides: *meets* when its upper bound is within
    the objective, *misses* when its lower bound is over it, else *inconclusive*."""
    verdicts = []
    for label, rate in ladder:
        e = rungs.get(label)
        if e is None:
            continue
        p99 = Estimate.from_json(e.get("latency", {}).get("p99"))
        if not e.get("standing_trials", e.get("trials")):
            verdicts.append((rate, "not measured"))
        elif not e.get("sustained", e["valid_trials"] == e["trials"]) \
                or (e.get("error_rate") or 0) > MAX_ERROR_RATE:
            verdicts.append((rate, "misses"))
        elif not p99.usable or p99.ci95 is None:
            verdicts.append((rate, "inconclusive"))
        elif p99.high <= objective_us:
            verdicts.append((rate, "meets"))
        elif p99.low > objective_us:
            verdicts.append((rate, "misses"))
        else:
            verdicts.append((rate, "inconclusive"))
    judged = [(rate, v) for rate, v in verdicts if v != "not measured"]
    meets = [rate for rate, v in judged if v == "meets"]
    best = max(meets, default=None)
    said = ", ".join(f"{rate:g} req/s {v}" for rate, v in verdicts if best is None or rate > best)
    if not judged:
        text, verdict = "not measured" + (f" ({said})" if said else ""), "not measured"
    elif best is None and any(v == "inconclusive" for _, v in judged):
        text, verdict = f"not shown to meet it at any rate ({said})", "inconclusive"
    elif best is None:
        text, verdict = f"no rate met it ({said})", "misses"
    elif not said:
        text, verdict = f"at least {best:g} req/s (the top of the ladder)", "meets"
    else:
        text, verdict = f"at least {best:g} req/s ({said})", "meets"
    return {"highest_meeting_rate": best, "text": text, "verdict": verdict,
            "per_rate": [{"rate": r, "verdict": v} for r, v in verdicts]}


def notification_lag(run: RunData, counted: list[StepResult]) -> dict[str, Any] | None:
    """The payments' notification lag over the counted steps (µs), or None."""
    lags = [h for s in counted if (h := run.notification_lag(s)) is not None]
    if not lags:
        return None
    merged = hdr.merge(lags)
    n = merged.get_total_count()
    return {"count": n, "payments": sum(int(s.extra.get("payments") or 0) for s in counted),
            "notifications": sum(int(s.extra.get("notifications") or 0) for s in counted),
            **{q.key: Estimate(float(merged.get_value_at_percentile(q.q)), samples=n,
                               supported=n >= q.min_samples).to_json() for q in QUANTILES},
            "max": merged.get_max_value()}


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 2) if values else None
