"""A budgets file against a run (and a baseline run): the refusals first
(``bench.budgets.refusals``), then one ``Result`` per budget, its verdict decided by
``bench.budgets.verdicts`` and its figures written by ``bench.budgets.text``. A budget
resting on an invalid step that a flag allowed is evaluated on the valid trials, with a note.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench import exitcodes
from bench.budgets import verdicts as v
from bench.budgets.metrics import Measured, Missing, RunView
from bench.budgets.refusals import (Allowances, Unusable, input_problems, slug, steps_under,
                                    uses_baseline)
from bench.budgets.spec import Budget, BudgetFile
from bench.budgets.text import fmt_change, fmt_estimate, ratio_estimate
from bench.render.display import ratio as fmt_ratio
from bench.results.model import Estimate
from bench.results.stats import t_estimate, unpaired_change

EXIT_PASS = exitcodes.OK  # every budget passes (or is noisy or missing, unless --strict)
EXIT_BREACH = exitcodes.FINDING  # a budget was breached
EXIT_UNDECIDED = exitcodes.NOTHING_VALID  # --strict: no breach, but a figure was noisy or missing

__all__ = ["Allowances", "Check", "Result", "Unusable", "evaluate", "evaluate_one"]


@dataclass(frozen=True)
class Result:
    """One budget's verdict, with the measured value (and interval) and the limit as text."""

    budget: Budget
    verdict: str
    measured: str
    limit: str
    reason: str = ""
    trials_needed: int | None = None
    per: str = "per placement"  # what "trials" counts: "per placement", "per run"
    notes: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """"pass"; "breach: ..."; "noisy: within the limit but too noisy to tell; about 7
        trials per placement would decide"; "missing: ..."."""
        parts = [p for p in (self.reason, self._trials(), *self.notes) if p]
        return self.verdict + (": " + "; ".join(parts) if parts else "")

    def _trials(self) -> str:
        if self.verdict != v.NOISY or not self.reason or self.reason.startswith("no interval"):
            return ""
        if self.trials_needed is None:
            return f"more than {v.MAX_TRIALS} trials {self.per} would be needed to decide"
        return f"about {self.trials_needed} trials {self.per} would decide"


@dataclass
class Check:
    """Every budget's result for one run (and baseline), and the warnings of allowed input."""

    run_id: str
    baseline_id: str | None
    budgets_path: str
    results: list[Result]
    warnings: list[str] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(r.verdict == verdict for r in self.results)

    def exit_code(self, strict: bool = False) -> int:
        """EXIT_BREACH: a breach; else, with ``strict``, EXIT_UNDECIDED when a figure was
        noisy or missing (a gate that fails closed measures again, then fails); else
        EXIT_PASS."""
        if any(r.verdict == v.BREACH for r in self.results):
            return EXIT_BREACH
        if strict and any(r.verdict in (v.NOISY, v.MISSING) for r in self.results):
            return EXIT_UNDECIDED
        return EXIT_PASS

    def totals(self) -> str:
        return ", ".join(f"{self.count(x)} {x}" for x in v.VERDICTS)


def evaluate(budgets: BudgetFile, run: RunView, baseline: RunView | None = None,
             allow: Allowances = Allowances()) -> Check:
    """Every budget's verdict. Raises Unusable (exit 2) for input that is not allowed."""
    refusals, warnings, invalid = input_problems(budgets, run, baseline, allow)
    if refusals:
        raise Unusable(" | ".join(refusals))
    results = []
    for b in budgets.budgets:
        result = evaluate_one(b, run, baseline)
        left_out = {slug(s) for s in steps_under(b, run)} & invalid.get(run.name, set())
        if baseline is not None and uses_baseline(b):
            left_out |= {f"baseline {slug(s)}" for s in steps_under(b, baseline, label_from=run)
                         if slug(s) in invalid.get(baseline.name, set())}
        if left_out:
            result = Result(**{**result.__dict__, "notes": result.notes + (
                f"{len(left_out)} invalid step(s) left out",)})
        results.append(result)
    return Check(run.summary.run_id, baseline.summary.run_id if baseline else None,
                 budgets.path, results, warnings)


def evaluate_one(b: Budget, run: RunView, baseline: RunView | None) -> Result:
    limit_text = b.limit.describe()
    try:
        kind = b.limit.kind
        if kind == "ceiling":
            return _ceiling(b, run)
        if b.limit.spec.own_verdict:
            decision, measured = run.figures(b.experiment).verdict(b, run)
            return _result(b, decision, measured)
        if kind == "floor":
            return _floor(b, run)
        if kind == "calibrated":
            return _calibrated(b, run)
        if kind == "ratio":
            return _ratio(b, run)
        return _growth(b, run, baseline)
    except Missing as exc:
        return Result(b, v.MISSING, "n/a", limit_text, str(exc))


def _result(b: Budget, d: v.Decision, measured: str, limit: str | None = None,
            per: str = "per placement") -> Result:
    return Result(b, d.verdict, measured, limit or b.limit.describe(), d.reason,
                  d.trials_needed, per)


def _ceiling(b: Budget, run: RunView) -> Result:
    m = run.measure(b.experiment, b.placement, b.request, b.rung, b.limit.metric)
    unit = b.limit.spec.unit
    if unit == "x":
        return _result(b, v.ceiling(m.estimate, b.limit.value, m.spread), fmt_ratio(m.estimate))
    return _result(b, v.ceiling(m.estimate, b.limit.value, m.spread), fmt_estimate(m.estimate, unit))


def _calibrated(b: Budget, run: RunView) -> Result:
    """The figure in units of the calibration figure: per trial, the figure over the same
    trial's calibration figure, their mean with a t interval over trials (a plain ratio, not
    a log ratio, so a figure near or below 0, like a function call's cost, is fine). Without
    per-trial values, the figure's interval against factor x the calibration's interval:
    breach only above factor x its upper bound, pass only below factor x its lower bound."""
    lim = b.limit
    m = run.measure(b.experiment, b.placement, b.request, b.rung, lim.metric)
    c = run.calibration(lim.of)
    common = sorted(set(m.per_trial) & set(c.per_trial)) if m.keyed else []
    scaled = Estimate(c.estimate.value * lim.value,
                      *(x * lim.value for x in c.estimate.ci95) if c.estimate.ci95 else (None, None))
    limit_text = f"{lim.describe()} = {fmt_estimate(scaled, 'ms')}"
    if common:
        e = t_estimate([m.per_trial[t] / c.per_trial[t] for t in common])
        return _result(b, v.ceiling(e, lim.value, v.Spread.of_t_estimate(e)),
                       f"{fmt_ratio(e, ' ' + lim.of)} = {fmt_estimate(m.estimate, 'ms')}", limit_text)
    e = m.estimate
    if e.ci95 is None or scaled.ci95 is None:
        d = v.Decision(v.NOISY, "no interval (fewer than two valid trials)")
    elif e.low > scaled.high:
        d = v.Decision(v.BREACH, "the whole interval is over the limit's")
    elif e.high <= scaled.low:
        d = v.Decision(v.PASS)
    else:
        d = v.Decision(v.NOISY, (v.WITHIN if e.value <= scaled.value else v.OVER)
                       + " (no per-trial values to pair with the calibration)")
    return _result(b, d, fmt_estimate(e, "ms"), limit_text)


def _ratio(b: Budget, run: RunView) -> Result:
    versus = b.limit.versus or run.summary.baseline or ""
    r = run.paired(b.experiment, b.placement, versus, b.request, b.rung, b.limit.metric)
    e = ratio_estimate(r)
    return _result(b, v.ceiling(e, b.limit.value, v.Spread.of_logs(r.log_ratios)),
                   fmt_ratio(e, f" {versus}"), f"<= {b.limit.value:g}x {versus}")


def _floor(b: Budget, run: RunView) -> Result:
    m = run.measure(b.experiment, b.placement, b.request, b.rung, b.limit.metric)
    return _result(b, v.floor(m.estimate, b.limit.value, m.spread),
                   fmt_estimate(m.estimate, b.limit.spec.unit))


def _positive(values: Iterable[float]) -> list[float]:
    return [x for x in values if x is not None and math.isfinite(x) and x > 0]


def _normalised(m: Measured, c: Measured) -> list[float]:
    common = sorted(set(m.per_trial) & set(c.per_trial)) if m.keyed else []
    if not common:
        raise Missing("no per-trial values to divide by the calibration figure")
    return [m.per_trial[t] / c.per_trial[t] for t in common]


def _growth(b: Budget, run: RunView, baseline: RunView | None) -> Result:
    """Against ``versus``: the paired ratio over trials of this run. Against the baseline
    run: Welch over the two runs' per-trial values (the rung resolved in this run, the same
    label read in both), each divided by its own trial's calibration figure with ``of``."""
    lim = b.limit
    if lim.versus:  # two placements of one run: paired
        r = run.paired(b.experiment, b.placement, lim.versus, b.request, b.rung, lim.metric)
        e = ratio_estimate(r)
        return _result(b, v.growth(e, lim.value, v.Spread.of_logs(r.log_ratios)),
                       fmt_change(e, r.p_value))
    if baseline is None:
        raise Missing("no --baseline run to compare with")
    label = run.rung(b.experiment, b.rung)
    new = run.measure(b.experiment, b.placement, b.request, label, lim.metric)
    try:
        old = baseline.measure(b.experiment, b.placement, b.request, label, lim.metric)
    except Missing as exc:
        raise Missing(f"baseline: {exc}") from None
    if lim.of:
        a, c = _normalised(old, baseline.calibration(lim.of)), _normalised(new, run.calibration(lim.of))
    else:
        a, c = list(old.per_trial.values()), list(new.per_trial.values())
    if not a or not c:
        raise Missing("no per-trial values in " + ("the baseline" if not a else "the run"))
    if _positive(a) != a or _positive(c) != c:
        raise Missing("a growth needs positive per-trial values (this figure reaches 0: "
                      "limit it with a ceiling)")
    change, spread = v.welch_change(a, c)
    p = unpaired_change([math.log(x) for x in a], [math.log(x) for x in c])
    return _result(b, v.growth(change, lim.value, spread), fmt_change(change, p), per="per run")
