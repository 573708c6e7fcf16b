"""Reading a budget's figure out of a run: the value, its 95% interval, and its trials.

A run is seen through ``RunView``: its summary (``summary.json``, or the summary computed
in memory) and, when the run directory is at hand, its raw interval logs (``RunData``),
read only for per-trial figures the summary does not keep (a named request's percentile per
trial, p99.9 per trial, a calibration figure per trial). Each figure is read by the
experiment that offers it (``bench.budgets.figures``); this module holds what is common. Units are the
budget's: latencies in ms (the summary's are µs), CPU in ms per request, memory MiB, error
rate a fraction, ratios x. A figure that cannot be had raises ``Missing`` with the reason.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bench.budgets.spec import calibrations, figures_of
from bench.budgets.verdicts import Spread
from bench.results.model import QUANTILE, Estimate, Ratio, RunSummary
from bench.results.reader import RunData
from bench.results.stats import paired_ratio

if TYPE_CHECKING:
    from bench.budgets.figures import BudgetFigures

US_PER_MS = 1000.0


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


def scaled(e: Estimate, factor: float) -> Estimate:
    def s(x: float | None) -> float | None:
        return None if x is None else x * factor
    return replace(e, value=s(e.value), low=s(e.low), high=s(e.high))


def usable(e: Estimate, what: str) -> Estimate:
    if e.value is None:
        raise Missing(f"{what}: not measured (no valid trial)")
    if not e.supported:
        key = what.split()[-1]
        need = QUANTILE[key].min_samples if key in QUANTILE else None
        raise Missing(f"too few samples for {what}: {e.samples or 0:,}"
                      + (f" of the {need:,} it needs" if need else ""))
    return e


def by_trial(doc: Mapping[Any, Any] | None, factor: float = 1.0) -> dict[int, float]:
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

    def steps(self, experiment: str, placement: str | None = None,
              rung: str | None = None) -> list[dict[str, Any]]:
        """steps.csv rows (valid or not) of ``experiment`` [, placement [, rung]]."""
        return [s for s in self.summary.steps if s.get("experiment") == experiment
                and placement in (None, s.get("placement")) and rung in (None, str(s.get("rung")))]

    # -- figures, as the experiment that offers them reads them ---------------------------
    def figures(self, experiment: str) -> BudgetFigures:
        found = figures_of(experiment)
        if found is None:
            raise Missing(f"the {experiment} experiment offers no budget figures")
        return found

    def rung(self, experiment: str, rung: str) -> str:
        """The rung's label; "headline" resolves to the run's headline rung."""
        return self.figures(experiment).resolve_rung(self, rung)

    def measure(self, experiment: str, placement: str, request: str, rung: str,
                metric: str) -> Measured:
        """The figure ``metric`` of ``placement`` (raises Missing)."""
        return self.figures(experiment).measure(self, placement, request,
                                                self.rung(experiment, rung), metric)

    def raw_percentiles(self, experiment: str, placement: str, rung: str,
                         names: list[str], q: str) -> dict[int, float]:
        """Each valid trial's own percentile ``q`` of ``names`` (ms), from the interval logs;
        empty without the run's files, and empty unless every trial has the samples the
        percentile needs (``Quantile.min_samples``: a trial's "p99" of 240 requests is no p99)."""
        if self.data is None:
            return {}
        out = {}
        for step in self.data.steps_of(experiment, placement, rung, valid_only=True):
            h = self.data.histogram(step, names)
            if h.get_total_count() < QUANTILE[q].min_samples:
                return {}
            out[step.key.trial] = h.get_value_at_percentile(QUANTILE[q].q) / US_PER_MS
        return out

    def calibration(self, of: str) -> Measured:
        """A calibration figure measured in this run (ms), per trial where it can be had,
        from the experiment that offers it."""
        experiment, what = calibrations()[of]
        return self.figures(experiment).calibration(self, of)

    def paired(self, experiment: str, placement: str, versus: str, request: str, rung: str,
               metric: str) -> Ratio:
        """``placement`` over ``versus`` in this run, paired by trial (raises Missing)."""
        if placement == versus:
            raise Missing(f"{placement} over itself: name another placement in 'versus'")
        label = self.rung(experiment, rung)
        own = self.figures(experiment).paired(self, placement, versus, request, label, metric)
        if own is not None:
            return own
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

