"""What makes a run unusable for a check (exit 2), each refused unless a flag allows it:
an incomplete run or baseline; an invalid step under a budget (a step the budget's figure
rests on, in either run); a baseline measured on another CPU model or core count, or with
another configuration. An allowed problem becomes a warning printed above the table.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.budgets.metrics import Missing, RunView
from bench.budgets.spec import Budget, BudgetFile

ENVIRONMENT_KEYS = ("cpu_model", "cpu_count")
CONFIG_KEYS = ("profile", "topologies", "launch", "cpus", "arrival", "generator_processes",
               "generators", "targets", "experiments")  # not the seed: a different seed is a fair repeat


class Unusable(Exception):
    """The input cannot be checked; the message (one line) says which and which flag allows it."""


@dataclass(frozen=True)
class Allowances:
    incomplete: bool = False
    invalid: bool = False
    env_mismatch: bool = False


def _placements_under(b: Budget, run: RunView) -> list[str]:
    out = [b.placement]
    lim = b.limit
    if lim.kind == "ratio":
        out.append(lim.versus or run.summary.baseline or b.placement)
    if lim.kind == "growth" and lim.versus:
        out.append(lim.versus)
    out += run.figures(b.experiment).placements_under(b, run)
    return list(dict.fromkeys(out))


def steps_under(b: Budget, view: RunView,
                label_from: RunView | None = None) -> list[dict[str, Any]]:
    """The steps ``b``'s figure rests on in ``view``: its rung's, resolved in ``label_from``
    (default ``view``), or every rung's when it cannot be resolved; the experiment that
    offers the figure has the last word (``BudgetFigures.steps_under``)."""
    steps = [s for p in _placements_under(b, view) for s in view.steps(b.experiment, p)]
    try:
        label: str | None = (label_from or view).rung(b.experiment, b.rung)
    except Missing:
        label = None
    return view.figures(b.experiment).steps_under(b, view, label, steps)


def slug(s: Mapping[str, Any]) -> str:
    trial = int(s.get("trial", 0)) + 1
    return f"{s.get('experiment')} {s.get('placement')} {s.get('rung')} trial {trial}"


def uses_baseline(b: Budget) -> bool:
    return b.limit.kind == "growth" and not b.limit.versus


def _incomplete_reason(view: RunView) -> str:
    for w in view.summary.warnings:
        if "INCOMPLETE" in w:
            return w
    return "this run is INCOMPLETE"


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in a:
            if key in b:  # a key only one harness version writes is not a choice of the user
                _diff(a[key], b[key], f"{path}.{key}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        # Item by item, so a key added to the items (a topology's scale) is skipped too.
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path} {b!r} (baseline) vs {a!r} (run)")


def environment_differences(run: RunView, baseline: RunView) -> list[str]:
    """How the baseline's machine or configuration differs from the run's."""
    out = []
    for key in ENVIRONMENT_KEYS:
        a, b = run.summary.environment.get(key), baseline.summary.environment.get(key)
        if a != b:
            out.append(f"{key} {b!r} (baseline) vs {a!r} (run)")
    for key in CONFIG_KEYS:
        if key in run.config and key in baseline.config:
            _diff(run.config[key], baseline.config[key], f"config.{key}", out)
    return out


def input_problems(budgets: BudgetFile, run: RunView, baseline: RunView | None,
                   allow: Allowances) -> tuple[list[str], list[str], dict[str, set[str]]]:
    """(refusals, warnings, invalid step slugs per view name). Refusals make exit 2."""
    refusals: list[str] = []
    warnings: list[str] = []
    views = [run] + ([baseline] if baseline is not None else [])
    for view in views:
        if not view.summary.complete:
            text = f"{view.name} {view.summary.run_id}: {_incomplete_reason(view)}"
            if allow.incomplete:
                warnings.append(text + " (allowed by --allow-incomplete)")
            else:
                refusals.append(text + "; --allow-incomplete checks it anyway")
    invalid: dict[str, set[str]] = {view.name: set() for view in views}
    for view in views:
        found: dict[str, str] = {}
        for b in budgets.budgets:
            if view is baseline and not uses_baseline(b):
                continue
            for s in steps_under(b, view, label_from=run):
                if not s.get("valid", True):
                    found[slug(s)] = str(s.get("invalid_reasons") or "invalid")
        invalid[view.name] = set(found)
        if found:
            listed = "; ".join(f"{name} ({why})" for name, why in list(found.items())[:3])
            more = f"; and {len(found) - 3} more" if len(found) > 3 else ""
            text = (f"{view.name} {view.summary.run_id}: {len(found)} invalid step(s) under the "
                    f"budgets: {listed}{more}")
            if allow.invalid:
                warnings.append(text + " (allowed by --allow-invalid: figures use the valid trials)")
            else:
                refusals.append(text + "; --allow-invalid evaluates on the valid trials")
    if baseline is not None:
        diffs = environment_differences(run, baseline)
        if diffs:
            more = f"; and {len(diffs) - 5} more" if len(diffs) > 5 else ""
            text = (f"baseline {baseline.summary.run_id} was measured in another environment: "
                    + "; ".join(diffs[:5]) + more)
            if allow.env_mismatch:
                warnings.append(text + " (allowed by --allow-env-mismatch)")
            else:
                refusals.append(text + "; --allow-env-mismatch compares them anyway")
    return refusals, warnings, invalid


