"""What an experiment offers to budgets: the figures a budgets file may limit for it, and how
each is read out of a run.

``Experiment.budget_figures()`` returns a ``BudgetFigures`` (or None: nothing to budget). The
budgets core (spec, metrics, evaluate, refusals) knows experiments only through it, so a new
experiment brings its budget figures with it, like its scenario and its report.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from bench.budgets.spec import HEADLINE, MetricSpec

if TYPE_CHECKING:
    from bench.budgets.metrics import Measured, RunView
    from bench.budgets.spec import Budget
    from bench.budgets.verdicts import Decision
    from bench.results.model import Ratio


class BudgetFigures(ABC):
    """The figures of one experiment a budget may name, and how to read them.

    Units are the budget's: latencies ms, CPU ms per request, memory MiB, ratios x. A figure
    that cannot be had raises ``bench.budgets.metrics.Missing`` with the reason."""

    metrics: ClassVar[Sequence[MetricSpec]] = ()
    default_rung: ClassVar[str] = HEADLINE  # the rung of a budget that names none
    shows_rung: ClassVar[bool] = True  # a figure's label says its rung ("@ r120")
    # name -> what it is: figures of this experiment that any budget's `calibrated` limit (or
    # a growth's `of`) may divide by, e.g. a raw round trip measured in the same run
    calibrations: ClassVar[Mapping[str, str]] = {}

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment  # its name: the key of its result in the summary

    def metric(self, name: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.name == name), None)

    def request_problem(self, request: str) -> str | None:
        """Why ``request`` (not "all") names no request of this experiment; None if it does."""
        return f"this experiment has no per-request figures, got {request!r}"

    def limit_problem(self, spec: MetricSpec, requests: Sequence[str]) -> str | None:
        """Why ``spec`` cannot be limited for these requests; None if it can."""
        return None

    def resolve_rung(self, view: "RunView", rung: str) -> str:
        """The rung label a budget's ``rung`` means in ``view``: "headline" is the label
        the experiment's result names as ``headline_rung``."""
        if rung != HEADLINE:
            return rung
        label = view.result(self.experiment).get("headline_rung")
        if label is None:
            from bench.budgets.metrics import Missing
            raise Missing("the run has no headline rung (no rung was valid in every trial of "
                          "every placement)")
        return str(label)

    @abstractmethod
    def measure(self, view: "RunView", placement: str, request: str, label: str,
                metric: str) -> "Measured":
        """The figure ``metric`` of ``placement`` at rung ``label``."""

    def paired(self, view: "RunView", placement: str, versus: str, request: str, label: str,
               metric: str) -> "Ratio | None":
        """The experiment's own paired ratio of the figure, when its analysis made one (the
        same number as the report's); None: the budgets pair the per-trial values."""
        return None

    def calibration(self, view: "RunView", name: str) -> "Measured":
        """The calibration figure ``name`` (one of ``calibrations``) in ms."""
        raise NotImplementedError(name)

    def placements_under(self, budget: "Budget", view: "RunView") -> list[str]:
        """Placements besides the budget's own whose steps its figure rests on."""
        return []

    def steps_under(self, budget: "Budget", view: "RunView", label: str | None,
                    steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Which of the placements' ``steps`` the budget's figure rests on: its rung's (all
        of them when ``label`` is None: the rung could not be resolved)."""
        return steps if label is None else [s for s in steps if str(s.get("rung")) == label]

    def verdict(self, budget: "Budget", view: "RunView") -> tuple["Decision", str]:
        """For a metric whose spec says ``own_verdict``: the decision and the measured
        text (e.g. a throughput floor judged against a ladder of rungs)."""
        raise NotImplementedError(budget.limit.metric)
