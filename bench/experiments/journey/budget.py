"""The journey's figures for budgets: percentiles per request at a rung, the error rate, CPU
and memory per request, and throughput at the run's p99 objective (a floor the journey judges
against its own ladder of rates). Units are the budget's: ms, a fraction, MiB, req/s."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.budgets import verdicts as v
from bench.budgets.figures import BudgetFigures
from bench.budgets.metrics import US_PER_MS, Measured, Missing, RunView, by_trial, scaled, usable
from bench.budgets.spec import ALL, CPU_PER_REQUEST, Budget, MetricSpec, percentile_metrics
from bench.results.model import Estimate, Ratio

# The figures the journey's analysis pairs itself (its "ratios"): a budget's ratio of them is
# the report's number, not a second estimate of it.
OWN_RATIOS = {"p50_ms": "p50", "p99_ms": "p99", "cpu_ms_per_request": "cpu_ms_per_request",
              "pss_mib": "pss_mib"}


class JourneyFigures(BudgetFigures):
    metrics = (
        *percentile_metrics(),
        MetricSpec("error_rate", "error rate", "", ("ceiling",)),
        MetricSpec("throughput_rps", "throughput at the p99 objective", "req/s", ("floor",),
                   own_verdict=True),
        CPU_PER_REQUEST,
        MetricSpec("pss_mib", "memory (PSS)", "MiB", ("ceiling", "ratio", "growth")),
    )

    def __init__(self, experiment: str, names: Sequence[str]) -> None:
        super().__init__(experiment)
        self.names = tuple(names)  # the request names of the user mix

    def request_problem(self, request: str) -> str | None:
        if request in self.names:
            return None
        return f"unknown {self.experiment} request {request!r}; known: {ALL}, {', '.join(self.names)}"

    def entry(self, view: RunView, placement: str, label: str) -> Mapping[str, Any]:
        per = view.placement(self.experiment, placement)
        if label not in per:
            raise Missing(f"rung {label!r} was not measured (rungs: {', '.join(per) or 'none'})")
        return per[label]

    def measure(self, view: RunView, placement: str, request: str, label: str,
                metric: str) -> Measured:
        entry = self.entry(view, placement, label)
        spec = self.metric(metric)
        trials = int(entry.get("valid_trials") or 0)
        if spec.quantile:
            q = spec.quantile
            if request == ALL:
                doc = entry.get("latency", {}).get(q)
            else:
                doc = entry.get("per_name", {}).get(request, {}).get(q)
                if doc is None:
                    raise Missing(f"no {request} request was recorded at {label}")
            e = scaled(usable(Estimate.from_json(doc), q), 1 / US_PER_MS)
            stored = entry.get("by_trial", {}).get(q) if request == ALL else None
            names = list(self.names) if request == ALL else [request]
            per_trial = (by_trial(stored, 1 / US_PER_MS) if stored is not None
                         else view.raw_percentiles(self.experiment, placement, label, names, q))
            return Measured(e, v.Spread("scale", trials), per_trial)
        if metric == "error_rate":
            return self._error_rate(view, placement, label)
        e = usable(Estimate.from_json(entry.get(metric)), spec.label)
        return Measured(e, v.Spread.of_t_estimate(e), by_trial(entry.get("by_trial", {}).get(metric)))

    def _error_rate(self, view: RunView, placement: str, label: str) -> Measured:
        """Errors and censored requests over scheduled ones, every step of the rung pooled,
        invalid ones included, with the Clopper-Pearson interval. A step with over 1% errors
        is invalid for that reason: pooling the valid ones only, this limit could never fail."""
        rows = list(view.steps(self.experiment, placement, label))
        if not rows:
            raise Missing("error rate: not measured (no step)")
        bad = [int(s.get("errors") or 0) + int(s.get("censored") or 0) for s in rows]
        scheduled = [int(s.get("scheduled") or 0) for s in rows]
        k, n = sum(bad), sum(scheduled)
        if n == 0:
            raise Missing("error rate: nothing was scheduled")
        low, high = v.clopper_pearson(k, n)
        per_trial = {int(s["trial"]): b / n_ for s, b, n_ in zip(rows, bad, scheduled) if n_}
        return Measured(Estimate(k / n, low, high, samples=n),
                        v.Spread("binomial", len(rows), k=k, n=n), per_trial)

    def paired(self, view: RunView, placement: str, versus: str, request: str, label: str,
               metric: str) -> Ratio | None:
        figure = OWN_RATIOS.get(metric)
        if request != ALL or figure is None:
            return None
        self.entry(view, placement, label)
        self.entry(view, versus, label)
        doc = view.result(self.experiment).get("ratios", {}).get(f"{placement}/{versus}", {}) \
            .get(label, {}).get(figure)
        if doc is None:
            return None
        r = Ratio.from_json(doc)
        if r.value is not None and not r.supported:
            raise Missing(f"too few samples for {figure} in one of the placements")
        if r.value is None:
            raise Missing(r.note or "no trial valid in both placements")
        return r

    def steps_under(self, budget: Budget, view: RunView, label: str | None,
                    steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if budget.limit.metric == "error_rate":
            # pooled over every step, invalid ones included (``_error_rate``): none of them
            # is left out of the figure, so none is refused or noted as left out
            return []
        if budget.limit.metric == "throughput_rps":
            # a rung over the floor that the system could not sustain is the throughput's
            # bound, not a broken measurement
            return [s for s in steps if float(s.get("rate") or 0) <= budget.limit.value]
        return super().steps_under(budget, view, label, steps)

    def verdict(self, budget: Budget, view: RunView) -> tuple[v.Decision, str]:
        """Throughput at the p99 objective against a floor of X req/s, from the journey's
        own verdict per rung (a rung *meets* when its p99 interval is within the objective,
        *misses* when it is over). A pass when a rung at X or above meets; a breach when a
        rung at X or under misses; noisy when the rung that would decide is inconclusive
        (with the trials that would decide it); missing when the ladder cannot tell (no
        valid rung at or over X, or no rung between the last met and the first missed).
        Rungs with an invalid trial are no evidence either way."""
        result = view.result(self.experiment)
        found = result.get("throughput_at_objective", {})
        if budget.placement not in found:
            raise Missing(f"placement {budget.placement!r} is not in this run")
        t = found[budget.placement]
        floor_rps = budget.limit.value
        objective_ms = float(result.get("objective_p99_ms") or 0)
        rungs = {e["rate"]: e for e in result["placements"].get(budget.placement, {}).values()}
        whole = {rate for rate, e in rungs.items() if e.get("valid_trials") == e.get("trials")}
        verdict = {r["rate"]: r["verdict"] for r in t.get("per_rate", []) if r["rate"] in whole}
        measured = f"{t.get('text', 'n/a')} (p99 <= {objective_ms:g} ms)"
        meets = [r for r, x in verdict.items() if x == "meets" and r >= floor_rps]
        misses = [r for r, x in verdict.items() if x == "misses" and r <= floor_rps]
        if meets and misses:
            return v.Decision(v.NOISY, "the ladder is not monotone: met at or above the "
                                       "floor, missed at or under it"), measured
        if meets:
            return v.Decision(v.PASS), measured
        if misses:
            return v.Decision(v.BREACH, f"p99 is over the objective at {min(misses):g} "
                                        f"req/s"), measured
        above = sorted(r for r in verdict if r >= floor_rps)
        below = sorted(r for r in verdict if r <= floor_rps)
        deciding = [r for r in (above[:1] + below[-1:]) if verdict[r] == "inconclusive"]
        if not deciding:
            why = (f"no valid rung at or above {floor_rps:g} req/s (the ladder tops out at "
                   f"{max(rungs, default=0):g})" if not above else
                   f"the ladder cannot decide {floor_rps:g} req/s: the first rung over it "
                   "misses; add a rung at the floor")
            return v.Decision(v.MISSING, why), measured
        rate = deciding[0]
        p99 = Estimate.from_json(rungs[rate].get("latency", {}).get("p99"))
        if not p99.usable:
            return v.Decision(v.MISSING, f"p99 at {rate:g} req/s cannot be judged: too few "
                                         f"samples ({p99.samples or 0:,})"), measured
        spread = v.Spread("scale", int(rungs[rate].get("valid_trials") or 1))
        needed = v.trials_to_clear(p99, objective_ms * 1000, spread)
        return v.Decision(v.NOISY, f"p99 at {rate:g} req/s is inconclusive against the "
                                   "objective", needed), measured
