"""Reading a budget's figure out of a run: the value, its 95% interval, and its trials.

A run is seen through ``RunView``: its summary (``summary.json``, or the summary computed
in memory) and, when the run directory is at hand, its raw interval logs (``RunData``),
read only for per-trial figures the summary does not keep (a named request's percentile per
trial, p99.9 per trial, a chain length's percentile, a floor per trial). Units are the
budget's: latencies in ms (the summary's are µs), CPU in ms per request, memory MiB, error
rate a fraction, ratios x. A figure that cannot be had raises ``Missing`` with the reason.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bench.budgets.spec import ALL, CALIBRATIONS, CHAIN_REQUEST, HEADLINE, METRICS
from bench.budgets.verdicts import Spread, clopper_pearson
from bench.results.model import QUANTILE, Estimate, Ratio, RunSummary
from bench.results.reader import RunData
from bench.results.stats import paired_ratio

US_PER_MS = 1000.0
JOURNEY_RATIO_FIGURES = {"p50_ms": "p50", "p99_ms": "p99", "cpu_ms_per_request": "cpu_ms_per_request",
                         "pss_mib": "pss_mib"}  # what the journey pairs itself (its ratios)


class Missing(Exception):
    """The figure is not in the run; ``str(exc)`` says why."""


@dataclass(frozen=True)
class Measured:
    """A figure of one placement. ``per_trial``: its value in each valid trial (budget
    units); ``keyed``: the keys are trial numbers (so it can be paired with another
    placement's or a floor's), not just positions."""

    estimate: Estimate
    spread: Spread | None
    per_trial: dict[int, float] = field(default_factory=dict)
    keyed: bool = True


def _scaled(e: Estimate, factor: float) -> Estimate:
    def s(x: float | None) -> float | None:
        return None if x is None else x * factor
    return replace(e, value=s(e.value), low=s(e.low), high=s(e.high))


def _usable(e: Estimate, what: str) -> Estimate:
    if e.value is None:
        raise Missing(f"{what}: not measured (no valid trial)")
    if not e.supported:
        key = what.split()[-1]
        need = QUANTILE[key].min_samples if key in QUANTILE else None
        raise Missing(f"too few samples for {what}: {e.samples or 0:,}"
                      + (f" of the {need:,} it needs" if need else ""))
    return e


def _by_trial(doc: Mapping[Any, Any] | None, factor: float = 1.0) -> dict[int, float]:
    return {int(t): float(v) * factor for t, v in (doc or {}).items() if v is not None}


class RunView:
    """One run as the budgets see it. ``config``: the manifest's configuration (for the
    environment check); ``data``: the run's files, when at hand (None for a summary alone)."""

    def __init__(self, summary: RunSummary, data: RunData | None = None,
                 config: Mapping[str, Any] | None = None, name: str = "run") -> None:
        self.summary = summary
        self.data = data
        self.config = dict(config if config is not None else (data.config if data else {}))
        self.name = name

    # -- what the run has ---------------------------------------------------------------
    def result(self, experiment: str) -> Mapping[str, Any]:
        found = self.summary.experiments.get(experiment)
        if not found:
            raise Missing(f"the {experiment} experiment is not in this run")
        return found

    def placement(self, experiment: str, placement: str) -> Mapping[str, Any]:
        per = self.result(experiment).get("placements", {})
        if placement not in per:
            raise Missing(f"placement {placement!r} is not in this run "
                          f"({', '.join(self.summary.placements) or 'none'})")
        return per[placement]

    def rung(self, experiment: str, rung: str) -> str:
        """The rung's label; "headline" resolves to the run's headline rung (hops: "chain")."""
        if experiment == "hops":
            return "chain"
        if rung != HEADLINE:
            return rung
        label = self.result(experiment).get("headline_rung")
        if label is None:
            raise Missing("the run has no headline rate (no rate was valid in every trial of "
                          "every placement)")
        return str(label)

    def steps(self, experiment: str, placement: str | None = None,
              rung: str | None = None) -> list[dict[str, Any]]:
        """steps.csv rows (valid or not) of ``experiment`` [, placement [, rung]]."""
        return [s for s in self.summary.steps if s.get("experiment") == experiment
                and placement in (None, s.get("placement")) and rung in (None, str(s.get("rung")))]

    def journey_entry(self, placement: str, label: str) -> Mapping[str, Any]:
        per = self.placement("journey", placement)
        if label not in per:
            raise Missing(f"rung {label!r} was not measured (rungs: {', '.join(per) or 'none'})")
        return per[label]

    # -- figures ------------------------------------------------------------------------
    def measure(self, experiment: str, placement: str, request: str, rung: str,
                metric: str) -> Measured:
        """The figure ``metric`` of ``placement`` (raises Missing)."""
        if experiment == "journey":
            return self._journey(placement, request, self.rung(experiment, rung), metric)
        return self._hops(placement, request, metric)

    def _journey(self, placement: str, request: str, label: str, metric: str) -> Measured:
        entry = self.journey_entry(placement, label)
        spec = METRICS[metric]
        trials = int(entry.get("valid_trials") or 0)
        if spec.quantile:
            q = spec.quantile
            if request == ALL:
                doc = entry.get("latency", {}).get(q)
            else:
                doc = entry.get("per_name", {}).get(request, {}).get(q)
                if doc is None:
                    raise Missing(f"no {request} request was recorded at {label}")
            e = _scaled(_usable(Estimate.from_json(doc), q), 1 / US_PER_MS)
            stored = entry.get("by_trial", {}).get(q) if request == ALL else None
            per_trial = (_by_trial(stored, 1 / US_PER_MS) if stored is not None
                         else self._raw_percentiles("journey", placement, label,
                                                    _journey_names(request), q))
            return Measured(e, Spread("scale", trials), per_trial)
        if metric == "error_rate":
            return self._error_rate(placement, label)
        key = {"cpu_ms_per_request": "cpu_ms_per_request", "pss_mib": "pss_mib"}[metric]
        e = _usable(Estimate.from_json(entry.get(key)), spec.label)
        return Measured(e, Spread.of_t_estimate(e), _by_trial(entry.get("by_trial", {}).get(key)))

    def _error_rate(self, placement: str, label: str) -> Measured:
        """Errors and censored requests over scheduled ones, valid steps pooled, with the
        Clopper-Pearson interval."""
        rows = [s for s in self.steps("journey", placement, label) if s.get("valid")]
        if not rows:
            raise Missing("error rate: not measured (no valid trial)")
        bad = [int(s.get("errors") or 0) + int(s.get("censored") or 0) for s in rows]
        scheduled = [int(s.get("scheduled") or 0) for s in rows]
        k, n = sum(bad), sum(scheduled)
        if n == 0:
            raise Missing("error rate: nothing was scheduled")
        low, high = clopper_pearson(k, n)
        per_trial = {int(s["trial"]): b / n_ for s, b, n_ in zip(rows, bad, scheduled) if n_}
        return Measured(Estimate(k / n, low, high, samples=n),
                        Spread("binomial", len(rows), k=k, n=n), per_trial)

    def _hops(self, placement: str, request: str, metric: str) -> Measured:
        entry = self.placement("hops", placement)
        if not entry.get("valid_trials"):
            raise Missing(f"no valid hops trial for {placement}")
        spec = METRICS[metric]
        if spec.quantile:
            k = CHAIN_REQUEST.match(request).group(1)
            doc = entry.get("per_k", {}).get(k, {}).get(spec.quantile)
            if doc is None:
                raise Missing(f"chain k={k} was not measured")
            e = _scaled(_usable(Estimate.from_json(doc), spec.quantile), 1 / US_PER_MS)
            per_trial = self._raw_percentiles("hops", placement, "chain", [f"chain k={k}"],
                                              spec.quantile)
            return Measured(e, Spread("scale", int(entry["valid_trials"])), per_trial)
        if metric in ("per_call_ms", "bare_hop_ms"):
            key = "per_call_us" if metric == "per_call_ms" else "bare_hop_us"
            e = _scaled(_usable(Estimate.from_json(entry.get(key)), spec.label), 1 / US_PER_MS)
            per_trial = (_by_trial(entry.get("per_call_us_by_trial"), 1 / US_PER_MS)
                         if metric == "per_call_ms" else {})
            return Measured(e, Spread.of_t_estimate(e), per_trial)
        if metric == "cpu_ms_per_request":
            e = _usable(Estimate.from_json(entry.get("cpu_ms_per_request")), spec.label)
            per_trial = {int(s["trial"]): float(s["cpu_ms_per_request"])
                         for s in self.steps("hops", placement)
                         if s.get("valid") and s.get("cpu_ms_per_request")}
            return Measured(e, Spread.of_t_estimate(e), per_trial)
        if metric == "cpu_ms_per_hop":
            if "cpu_ms_per_hop" not in entry:
                raise Missing(f"CPU per HTTP hop is measured only for a placement with more "
                              f"HTTP hops than the baseline ({self.summary.baseline})")
            e = _usable(Estimate.from_json(entry["cpu_ms_per_hop"]), spec.label)
            values = entry.get("cpu_ms_per_hop_by_trial") or []
            return Measured(e, Spread.of_t_estimate(e), dict(enumerate(values)), keyed=False)
        r = Ratio.from_json(entry.get(metric))
        if r.value is None:
            raise Missing(f"{spec.label}: {r.note or 'not measured'}")
        e = Estimate(r.value, r.low, r.high, r.pairs, r.supported)
        return Measured(e, Spread.of_logs(r.log_ratios),
                        dict(enumerate(math.exp(x) for x in r.log_ratios)), keyed=False)

    def _raw_percentiles(self, experiment: str, placement: str, rung: str,
                         names: list[str], q: str) -> dict[int, float]:
        """Each valid trial's own percentile ``q`` of ``names`` (ms), from the interval logs;
        empty without the run's files."""
        if self.data is None:
            return {}
        out = {}
        for step in self.data.steps_of(experiment, placement, rung, valid_only=True):
            h = self.data.histogram(step, names)
            if h.get_total_count():
                out[step.key.trial] = h.get_value_at_percentile(QUANTILE[q].q) / US_PER_MS
        return out

    def calibration(self, of: str) -> Measured:
        """A floor measured in this run (ms), per trial where it can be had."""
        kind, what = CALIBRATIONS[of]
        floors = self.result("hops").get("floors", {})
        if kind not in floors:
            raise Missing(f"the run has no {what} (measured by the hops experiment)")
        e = _scaled(_usable(Estimate.from_json(floors[kind].get("p50")), "p50"), 1 / US_PER_MS)
        trials = sorted({int(s["trial"]) for s in self.steps("hops")})
        per_trial: dict[int, float] = {}
        if self.data is not None:
            from bench.results import hdr
            for trial in trials:
                blocks = self.data.floor_blocks(trial, kind)
                if blocks:
                    per_trial[trial] = hdr.merge(blocks).get_value_at_percentile(50) / US_PER_MS
        elif len(floors[kind].get("p50_by_trial") or ()) == len(trials):
            per_trial = {t: v / US_PER_MS for t, v in zip(trials, floors[kind]["p50_by_trial"])}
        return Measured(e, Spread("scale", len(trials) or 1), per_trial)

    def throughput(self, placement: str) -> Mapping[str, Any]:
        found = self.result("journey").get("throughput_at_objective", {})
        if placement not in found:
            raise Missing(f"placement {placement!r} is not in this run")
        return found[placement]

    def paired(self, experiment: str, placement: str, versus: str, request: str, rung: str,
               metric: str) -> Ratio:
        """``placement`` over ``versus`` in this run, paired by trial (raises Missing)."""
        if placement == versus:
            raise Missing(f"{placement} over itself: name another placement in 'versus'")
        label = self.rung(experiment, rung)
        fig = JOURNEY_RATIO_FIGURES.get(metric)
        if experiment == "journey" and request == ALL and fig and versus == self.summary.baseline:
            self.journey_entry(placement, label)
            self.journey_entry(versus, label)
            doc = self.result("journey").get("ratios", {}).get(f"{placement}/{versus}", {}) \
                .get(label, {}).get(fig)
            if doc is not None:
                r = Ratio.from_json(doc)
                if r.value is not None and not r.supported:
                    raise Missing(f"too few samples for {fig} in one of the placements")
                if r.value is None:
                    raise Missing(r.note or "no trial valid in both placements")
                return r
        a = self.measure(experiment, versus, request, rung, metric)
        b = self.measure(experiment, placement, request, rung, metric)
        if not (a.keyed and b.keyed) or not a.per_trial or not b.per_trial:
            raise Missing("no per-trial values to pair")
        common = sorted(set(a.per_trial) & set(b.per_trial))
        if not common:
            raise Missing("no trial valid in both placements")
        if any(x.per_trial[t] <= 0 for x in (a, b) for t in common):
            raise Missing("a ratio needs positive per-trial values (this figure reaches 0)")
        return paired_ratio([a.per_trial[t] for t in common], [b.per_trial[t] for t in common])


def _journey_names(request: str) -> list[str]:
    if request != ALL:
        return [request]
    from bench.experiments.journey.experiment import NAMES
    return list(NAMES)
