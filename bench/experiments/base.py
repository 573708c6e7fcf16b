"""What an experiment is to the harness: the one interface every experiment implements.

The harness core (``bench.run``) starts the placements, interleaves steps across placements
and trials, samples and stores. Everything particular to an experiment is here, behind five
questions the core asks it:

* ``settings(profile)``  its knobs for a profile (a frozen dataclass, recorded in the manifest);
* ``rungs(settings)``    its ladder: one label and rate per rung;
* ``placement(...)``     the topology and launch it measures for each of the run's
                         placements: the same by default; fan-out adds leaf servers;
* ``load(...)``          the load of one step: scenario, warm-up, duration, arrival, options;
* hooks around steps     ``start`` (once), ``prepare`` (per placement), ``before_trial``,
                         ``during`` (around the load: inject faults), ``after_step``
                         (e.g. read the shop's notification lag);
* ``analyse(run)``       from the run's files to its result (JSON-ready), headline rows and
                         warnings; and ``report(...)``, its sections of the report.

A new experiment is a package (experiment, scenario, analysis, report, plots) with a subclass
of ``Experiment``, made known through the ``seambench.experiments`` entry-point group (or
``bench.experiments.register``); no core module changes.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bench.results.model import Headline, StepKey, StepResult

if TYPE_CHECKING:
    from bench.budgets.figures import BudgetFigures
    from bench.load.generator import LoadResult
    from bench.render.document import Block
    from bench.results.reader import RunData
    from bench.results.store import RunStore
    from bench.system.launcher import LaunchSettings, RunningShop
    from shop.placement import Topology


@dataclass(frozen=True)
class Rung:
    label: str  # unique within the experiment, safe in a file name: "r120", "chain"
    rate: float  # scheduled arrivals per second
    # measured in the experiment's first this many trials only (a short probe, such as a
    # capacity rung); None: in every trial
    trials: int | None = None


@dataclass(frozen=True)
class StepLoad:
    """How one step loads the placement (see ``bench.load.plan.LoadPlan``)."""

    scenario: str  # the module of its locustfile, e.g. f"{__package__}.scenario"
    warmup_s: float
    duration_s: float
    arrival: str  # "constant" or "poisson"
    options: dict[str, Any] = field(default_factory=dict)
    # request names the scenario sends past the system under test (a floor measured in the
    # same step): kept in a log of their own, they enter none of the system's figures
    reference: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunOption:
    """An option an experiment adds to ``seambench run``: ``--NAME VALUE`` sets the field
    ``field`` of its settings (when the experiment runs). A number within ``low``..``high``."""

    name: str  # "p99-objective-ms"
    field: str  # "objective_p99_ms"
    help: str
    low: float
    high: float
    default_text: str  # what the settings' own default is, for --help

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def click_type(self) -> Any:
        from bench.experiments.limits import finite_range
        return finite_range(self.low, self.high)


@dataclass
class Progress:
    """Called after each step (steps done, steps planned, what ran) and at each phase."""

    on_step: Callable[[int, int, str], None] = lambda done, total, what: None
    on_phase: Callable[[str], None] = lambda what: None


@dataclass
class RunSession:
    """What a running harness lends an experiment's hooks. ``state`` is the experiment's own
    scratch space (per experiment name), e.g. floor servers or users' tokens."""

    store: "RunStore"
    launch: "LaunchSettings"
    system_cpus: tuple[int, ...] | None
    generator_cpus: tuple[int, ...] | None
    shops: dict[str, "RunningShop"]  # the run's placements, as given
    stack: ExitStack
    progress: Progress
    seed: int
    arrival: str
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (experiment, placement) -> the shop it measures, where its ``placement`` differs
    variants: dict[tuple[str, str], "RunningShop"] = field(default_factory=dict)

    def state_of(self, experiment: "Experiment") -> dict[str, Any]:
        return self.state.setdefault(experiment.name, {})

    def shop(self, experiment: "Experiment | str", placement: str) -> "RunningShop":
        """The running shop ``experiment`` measures as ``placement``."""
        name = experiment if isinstance(experiment, str) else experiment.name
        return self.variants.get((name, placement)) or self.shops[placement]


@dataclass
class Analysis:
    """An experiment's analysis of a run: ``result`` goes into summary.json under the
    experiment's name; ``headlines`` into the headline table; ``rests_on_nothing`` is True
    when a headline figure of this experiment had no valid step to rest on (the run then
    exits with ``EXIT_NOTHING_VALID``); ``violations`` are what the experiment found wrong
    with the system itself, each a sentence (the run then exits with ``EXIT_VIOLATION``,
    whatever else it found: a gate must fail on them)."""

    result: dict[str, Any]
    headlines: list[Headline] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rests_on_nothing: bool = False
    violations: list[str] = field(default_factory=list)


class Experiment(ABC):
    """One experiment, as the harness core sees it (see the module's docstring). An instance
    is stateless: what a run needs between hooks lives in ``RunSession.state_of(self)``."""

    name: ClassVar[str]
    title: ClassVar[str]  # one line for the report
    # Its place in a default `seambench run` (lower first); None: only when asked for.
    default_order: ClassVar[int | None] = None
    run_options: ClassVar[tuple[RunOption, ...]] = ()  # options it adds to `seambench run`
    # A step whose sends were later than this (p99, µs) was not measured (the harness's
    # failure: measured again at the end of the run). One absolute limit for every placement.
    max_lateness_p99_us: ClassVar[int] = 1_000
    # Why it cannot measure a placement it did not start (a target: bench/system/deployed.py),
    # when it starts, pins or kills processes; None: it needs only HTTP.
    needs_own_processes: ClassVar[str | None] = None
    # Why its load cannot come from distributed generators (``run --generators``); None: it can.
    needs_one_generator: ClassVar[str | None] = None

    @abstractmethod
    def settings(self, profile: str, overrides: Mapping[str, Any] | None = None) -> Any:
        """This experiment's settings for ``profile`` ("quick", "full", "smoke"), a frozen
        dataclass; ``overrides`` replace fields by name."""

    def trials(self, settings: Any, profile_trials: int) -> int:
        """How many trials of this experiment a run makes: the profile's, unless its settings
        say (``trials``: more for figures that need many short trials, fewer for one whose
        quick figures are only a sketch)."""
        return int(getattr(settings, "trials", None) or profile_trials)

    @abstractmethod
    def rungs(self, settings: Any) -> list[Rung]:
        ...

    @abstractmethod
    def load(self, session: RunSession, settings: Any, rung: Rung, placement: str) -> StepLoad:
        ...

    def placement(self, settings: Any, topology: "Topology",
                  launch: "LaunchSettings") -> tuple["Topology", "LaunchSettings"]:
        """The topology and launch settings this experiment measures as the run's placement
        ``topology`` (the same, unless it needs another shape of it: the harness then starts
        that one too, under the same placement name, and records it in the manifest)."""
        return topology, launch

    def start(self, session: RunSession, settings: Any) -> None:
        """Once, before any placement is measured (e.g. start helper servers on
        ``session.stack`` so they stop with the run)."""

    def prepare(self, session: RunSession, settings: Any, placement: str) -> None:
        """Once per placement after it started (untimed set-up, e.g. register users)."""

    def before_trial(self, session: RunSession, settings: Any, trial: int) -> None:
        """At the start of each trial, before its first step."""

    def during(self, session: RunSession, settings: Any, key: StepKey
               ) -> AbstractContextManager[None]:
        """Entered just before the step's load starts and left when it has ended, whatever
        ends it (e.g. inject faults, and undo them)."""
        return nullcontext()

    def after_step(self, session: RunSession, settings: Any, step: StepResult,
                   result: "LoadResult") -> None:
        """After a step was measured and before it is stored: add ``step.extra`` figures,
        invalid reasons, or harness histograms (``session.store.add_harness_histograms``)."""

    @abstractmethod
    def analyse(self, run: "RunData", resamples: int, seed: int) -> Analysis:
        ...

    def recorded_settings(self, recorded: Mapping[str, Any], profile: str) -> Any:
        """Settings as a manifest recorded them (plain data), back as this experiment's own
        type; a field not recorded (a run older than the field) is ``profile``'s. Raises
        ValueError for a value that does not fit."""
        from bench.results.codec import decode
        base = self.settings(profile)
        return decode(type(base), recorded, base)

    def budget_figures(self) -> "BudgetFigures | None":
        """The figures it offers to budgets (``seambench check``); None: nothing to budget."""
        return None

    def legacy_rung(self, rate: float) -> str:
        """The rung label of a step from a schema-1 run, which recorded only its rate."""
        return f"r{rate:g}"

    def report(self, run: "RunData", result: Mapping[str, Any], figures_dir: Path) -> list["Block"]:
        """This experiment's sections of the report (figures drawn into ``figures_dir``)."""
        return []


def validity(steps: list[StepResult]) -> dict[str, Any]:
    """How many of ``steps`` (one placement's trials of one rung) there are and are valid,
    and why each invalid one is: the entry every analysis starts from."""
    return {"trials": len(steps), "valid_trials": sum(s.valid for s in steps),
            "invalid": [f"trial {s.key.trial + 1}: {'; '.join(s.invalid_reasons)}"
                        for s in steps if not s.valid]}


def step_key(experiment: Experiment, placement: str, rung: Rung, trial: int) -> StepKey:
    return StepKey(experiment.name, placement, rung.label, trial)
