"""The hop-cost experiment's figures for budgets: a chain length's percentiles, one call's
cost (against the floors too), the bare hop, CPU per request and per HTTP hop; and the floors
themselves as calibration figures any budget may be written in multiples of. Units are the
budget's: ms, or x for a ratio."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence

from bench.budgets import verdicts as v
from bench.budgets.figures import BudgetFigures
from bench.budgets.metrics import US_PER_MS, Measured, Missing, RunView, by_trial, scaled, usable
from bench.budgets.spec import ALL, CPU_PER_REQUEST, Budget, MetricSpec, percentile_metrics
from bench.results import hdr
from bench.results.model import Estimate, Ratio

CHAIN_REQUEST = re.compile(r"^chain k=(\d+)$")
RUNG = "chain"  # the experiment's one rung
FLOORS = {  # calibration name -> (floor kind in the result's "floors", what it is)
    "http_p50": ("http", "raw keep-alive HTTP round trip p50"),
    "tcp_p50": ("tcp", "raw TCP round trip p50"),
    "http_nested_p50": ("http_nested", "HTTP round trip from inside a gunicorn worker, p50"),
}


class HopFigures(BudgetFigures):
    metrics = (
        *percentile_metrics(),
        CPU_PER_REQUEST,
        MetricSpec("per_call_ms", "one call", "ms", ("ceiling", "calibrated", "ratio", "growth"),
                   latency=True),
        MetricSpec("bare_hop_ms", "bare hop", "ms", ("ceiling", "calibrated"), latency=True),
        MetricSpec("cpu_ms_per_hop", "CPU per HTTP hop", "ms", ("ceiling", "growth")),
        MetricSpec("per_call_vs_hop_floor", "one call / bare hop", "x", ("ceiling", "growth")),
        MetricSpec("per_call_vs_http_floor", "one call / raw HTTP", "x", ("ceiling", "growth")),
    )
    default_rung = RUNG
    shows_rung = False
    calibrations = {name: what for name, (_, what) in FLOORS.items()}

    def request_problem(self, request: str) -> str | None:
        if CHAIN_REQUEST.match(request):
            return None
        return f"{self.experiment} requests are {ALL!r} or 'chain k=N', got {request!r}"

    def limit_problem(self, spec: MetricSpec, requests: Sequence[str]) -> str | None:
        if spec.quantile and ALL in requests:
            return (f"{self.experiment} percentiles are per chain length: set "
                    "request = 'chain k=N'")
        return None

    def resolve_rung(self, view: RunView, rung: str) -> str:
        return RUNG

    def paired(self, view: RunView, placement: str, versus: str, request: str, label: str,
               metric: str) -> Ratio | None:
        """One call's cost over ``versus``'s as the analysis paired it (a comparison the run
        asked for, e.g. NAME/NAME@base): the number the report prints. None otherwise."""
        doc = view.result(self.experiment).get("ratios", {}).get(f"{placement}/{versus}")
        if metric != "per_call_ms" or request != ALL or doc is None:
            return None
        r = Ratio.from_json(doc)
        if r.value is None:
            raise Missing(r.note or "no trial valid in both placements")
        return r

    def placements_under(self, budget: Budget, view: RunView) -> list[str]:
        # CPU per HTTP hop is the difference from the baseline placement's
        if budget.limit.metric == "cpu_ms_per_hop" and view.summary.baseline:
            return [view.summary.baseline]
        return []

    def measure(self, view: RunView, placement: str, request: str, label: str,
                metric: str) -> Measured:
        entry = view.placement(self.experiment, placement)
        if not entry.get("valid_trials"):
            raise Missing(f"no valid {self.experiment} trial for {placement}")
        spec = self.metric(metric)
        if spec.quantile:
            k = CHAIN_REQUEST.match(request).group(1)
            doc = entry.get("per_k", {}).get(k, {}).get(spec.quantile)
            if doc is None:
                raise Missing(f"chain k={k} was not measured")
            e = scaled(usable(Estimate.from_json(doc), spec.quantile), 1 / US_PER_MS)
            per_trial = view.raw_percentiles(self.experiment, placement, RUNG, [f"chain k={k}"],
                                             spec.quantile)
            return Measured(e, v.Spread("scale", int(entry["valid_trials"])), per_trial)
        if metric in ("per_call_ms", "bare_hop_ms"):
            key = "per_call_us" if metric == "per_call_ms" else "bare_hop_us"
            e = scaled(usable(Estimate.from_json(entry.get(key)), spec.label), 1 / US_PER_MS)
            per_trial = (by_trial(entry.get("per_call_us_by_trial"), 1 / US_PER_MS)
                         if metric == "per_call_ms" else {})
            return Measured(e, v.Spread.of_t_estimate(e), per_trial)
        if metric == "cpu_ms_per_request":
            e = usable(Estimate.from_json(entry.get("cpu_ms_per_request")), spec.label)
            per_trial = {int(s["trial"]): float(s["cpu_ms_per_request"])
                         for s in view.steps(self.experiment, placement)
                         if s.get("valid") and s.get("cpu_ms_per_request")}
            return Measured(e, v.Spread.of_t_estimate(e), per_trial)
        if metric == "cpu_ms_per_hop":
            if "cpu_ms_per_hop" not in entry:
                raise Missing(f"CPU per HTTP hop is measured only for a placement with more "
                              f"HTTP hops than the baseline ({view.summary.baseline})")
            e = usable(Estimate.from_json(entry["cpu_ms_per_hop"]), spec.label)
            values = entry.get("cpu_ms_per_hop_by_trial") or []
            return Measured(e, v.Spread.of_t_estimate(e), dict(enumerate(values)), keyed=False)
        r = Ratio.from_json(entry.get(metric))
        if r.value is None:
            raise Missing(f"{spec.label}: {r.note or 'not measured'}")
        e = Estimate(r.value, r.low, r.high, r.pairs, r.supported)
        return Measured(e, v.Spread.of_logs(r.log_ratios),
                        dict(enumerate(math.exp(x) for x in r.log_ratios)), keyed=False)

    def calibration(self, view: RunView, name: str) -> Measured:
        """A floor measured in this run (ms), per trial where it can be had."""
        kind, what = FLOORS[name]
        floors = view.result(self.experiment).get("floors", {})
        if kind not in floors:
            raise Missing(f"the run has no {what} (measured by the {self.experiment} "
                          f"experiment)")
        e = scaled(usable(Estimate.from_json(floors[kind].get("p50")), "p50"), 1 / US_PER_MS)
        trials = sorted({int(s["trial"]) for s in view.steps(self.experiment)})
        per_trial: dict[int, float] = {}
        if view.data is not None:
            for trial in trials:
                blocks = view.data.floor_blocks(trial, kind)
                if blocks:
                    per_trial[trial] = hdr.merge(blocks).get_value_at_percentile(50) / US_PER_MS
        elif len(floors[kind].get("p50_by_trial") or ()) == len(trials):
            per_trial = {t: x / US_PER_MS for t, x in zip(trials, floors[kind]["p50_by_trial"])}
        return Measured(e, v.Spread("scale", len(trials) or 1), per_trial)
