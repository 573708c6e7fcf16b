"""The toy experiment: one rung of health and readiness checks; p50 per request offered to
budgets. Nothing in the harness core names it."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.budgets import verdicts as v
from bench.budgets.figures import BudgetFigures
from bench.budgets.metrics import Measured, Missing, RunView
from bench.budgets.spec import percentile_metrics
from bench.experiments import Analysis, Experiment, Rung, RunSession, StepLoad
from bench.render.document import Block, Heading, Paragraph
from bench.results.model import Estimate, Headline
from bench.results.reader import RunData
from bench.results.stats import t_estimate

NAME = "toy"
REQUESTS = ("health", "ready")


@dataclass(frozen=True)
class ToySettings:
    rate: float = 40.0
    warmup_s: float = 0.3
    duration_s: float = 1.0


class ToyFigures(BudgetFigures):
    metrics = percentile_metrics(("p50",))
    default_rung = "health"  # its one rung

    def request_problem(self, request: str) -> str | None:
        return None if request in REQUESTS else f"the toy sends {REQUESTS}, not {request!r}"

    def measure(self, view: RunView, placement: str, request: str, label: str,
                metric: str) -> Measured:
        per_trial = {int(trial): us / 1000 for trial, us in
                     view.result(self.experiment)["p50_us_by_trial"][request].items()}
        if not per_trial:
            raise Missing(f"no valid {request} request")
        e = t_estimate(list(per_trial.values()))
        return Measured(e, v.Spread.of_t_estimate(e), per_trial)


class Toy(Experiment):
    name = NAME
    title = "health checks at one rate"

    def settings(self, profile: str, overrides: Mapping[str, Any] | None = None) -> ToySettings:
        return replace(ToySettings(), **dict(overrides or {}))

    def rungs(self, settings: ToySettings) -> list[Rung]:
        return [Rung("health", settings.rate)]

    def load(self, session: RunSession, settings: ToySettings, rung: Rung, placement: str) -> StepLoad:
        return StepLoad(f"{__package__}.scenario", settings.warmup_s, settings.duration_s,
                        "constant")

    def after_step(self, session, settings, step, result) -> None:
        step.extra["toy_seen"] = result.completed

    def budget_figures(self) -> ToyFigures:
        return ToyFigures(self.name)

    def analyse(self, run: RunData, resamples: int, seed: int) -> Analysis:
        steps = run.steps_of(self.name, valid_only=True)
        p50 = {name: float(run.histogram_of(steps, [name]).get_value_at_percentile(50))
               if steps else None for name in REQUESTS}
        by_trial = {name: {s.key.trial: float(run.histogram(s, [name]).get_value_at_percentile(50))
                           for s in steps} for name in REQUESTS}
        return Analysis({"valid_steps": len(steps), "p50_us": p50, "p50_us_by_trial": by_trial,
                         "seen": sum(int(s.extra["toy_seen"]) for s in steps)},
                        [Headline("toy health p50", "latency", Estimate(p50["health"]))],
                        rests_on_nothing=not steps)

    def report(self, run: RunData, result: Mapping[str, Any], figures_dir: Path) -> list[Block]:
        return [Heading("Toy experiment"), Paragraph(f"{result['valid_steps']} valid toy steps")]


EXPERIMENT = Toy()
