"""The budgets file: what it may say, read and checked, each error with its line and key.

A budgets file is TOML. Each ``[[budget]]`` picks a figure of a run (experiment, placement,
request, rung) and puts limits on it, one sub-table per kind of limit::

    [[budget]]
    experiment = "NAME"           # an experiment that offers budget figures
    placement = "microservices"   # or a list: one budget per placement
    request = "all"               # or a request name of the experiment
    rung = "headline"             # "headline" (the run's headline rung) or a label, "r120"

    [budget.ceiling]              # absolute: latency ms, CPU ms per request, MiB, a fraction
    p99_ms = 25
    error_rate = 0.01
    [budget.calibrated]           # multiples of a calibration figure measured in the same run
    of = "http_p50"
    p99_ms = 30                   # p99 <= 30 x the raw keep-alive HTTP round trip's p50
    [budget.ratio]                # this placement over another of the same run, paired by trial
    versus = "monolith"           # default: the run's first (baseline) placement
    p99_ms = 1.8
    [budget.growth]               # may not grow by more than this fraction (0.15 = 15%) ...
    p99_ms = 0.15                 # ... against --baseline RUN, or against `versus` in this run
    [budget.floor]
    throughput_rps = 100          # e.g. throughput at the run's p99 objective, req/s

Every limit becomes one ``Budget`` (one row of the table, one JUnit testcase). The metric
names carry the unit an absolute limit is written in; in ``calibrated`` (a multiple),
``ratio`` (x) and ``growth`` (a fraction) the same names only say which figure. Which
figures, requests, rungs and calibrations an experiment has is its own to say
(``bench.budgets.figures.BudgetFigures``).
"""
from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.budgets.tomlines import Path as KeyPath
from bench.budgets.tomlines import key_lines, line_of
from shop.textfile import TextFileError, read_text_file

if TYPE_CHECKING:
    from bench.budgets.figures import BudgetFigures

KINDS = ("ceiling", "floor", "calibrated", "ratio", "growth")
HEADLINE = "headline"
ALL = "all"


@dataclass(frozen=True)
class MetricSpec:
    """One figure a budget can limit. ``unit``: of an absolute limit (ceiling, floor);
    ``kinds``: the limit tables it may appear in; ``per_request``: whether a request other
    than "all" selects it (percentiles only)."""

    name: str
    label: str
    unit: str
    kinds: tuple[str, ...]
    per_request: bool = False
    quantile: str | None = None  # "p99" for "p99_ms"
    latency: bool = False  # a latency (ms): may be limited as a multiple of a calibration figure
    own_verdict: bool = False  # the experiment judges it itself (BudgetFigures.verdict)


def percentile_metrics(keys: tuple[str, ...] = ("p50", "p90", "p99", "p99.9")) -> tuple[MetricSpec, ...]:
    """Latency percentiles in ms, per request: the figures most experiments offer."""
    return tuple(MetricSpec(f"{key}_ms", key, "ms", ("ceiling", "calibrated", "ratio", "growth"),
                            per_request=True, quantile=key, latency=True) for key in keys)


CPU_PER_REQUEST = MetricSpec("cpu_ms_per_request", "CPU per request", "ms",
                             ("ceiling", "ratio", "growth"))


def figures_of(experiment: str) -> "BudgetFigures | None":
    """What ``experiment`` offers to budgets; None when it offers nothing or is unknown."""
    from bench.experiments import get, registered  # the registry loads the experiments
    return get(experiment).budget_figures() if experiment in registered() else None


def budgeted_experiments() -> list[str]:
    from bench.experiments import registered
    return [name for name in registered() if figures_of(name) is not None]


def calibrations() -> dict[str, tuple[str, str]]:
    """Every calibration figure an experiment offers: name -> (experiment, what it is)."""
    return {name: (experiment, what) for experiment in budgeted_experiments()
            for name, what in figures_of(experiment).calibrations.items()}
OPTIONS = {"calibrated": {"of"}, "growth": {"of", "versus"}, "ratio": {"versus"}}
SELECTORS = ("name", "experiment", "placement", "request", "rung")


class BudgetFileError(ValueError):
    """A budgets file that cannot be used; the message names the file, line and key."""


@dataclass(frozen=True)
class Limit:
    """One limit. ``value`` is in the metric's unit (ceiling, floor), a multiple of the
    calibration figure ``of`` (calibrated), a ratio this/versus (ratio), or the largest
    allowed growth as a fraction (growth: 0.15 = +15%)."""

    kind: str
    spec: MetricSpec
    value: float
    of: str | None = None
    versus: str | None = None
    line: int = 0

    @property
    def metric(self) -> str:
        return self.spec.name

    def describe(self) -> str:
        """"<= 25 ms", "<= 30x http_p50", "<= 1.8x monolith", "growth <= +15%", ">= 100 req/s"."""
        unit = self.spec.unit
        if self.kind == "ceiling" and self.metric == "error_rate":
            return f"<= {_num(self.value * 100)}%"
        if self.kind == "ceiling":
            return f"<= {_num(self.value)}{'' if unit == 'x' else ' '}{unit}".rstrip()
        if self.kind == "floor":
            return f">= {_num(self.value)} {unit}"
        if self.kind == "calibrated":
            return f"<= {_num(self.value)}x {self.of}"
        if self.kind == "ratio":
            return f"<= {_num(self.value)}x {self.versus or 'the baseline placement'}"
        against = f"vs {self.versus}" if self.versus else "vs --baseline"
        per = f" (per {self.of})" if self.of else ""
        return f"growth <= +{_num(self.value * 100)}% {against}{per}"


@dataclass(frozen=True)
class Budget:
    """One limit on one figure of a run: a row of the table, a JUnit testcase."""

    name: str
    experiment: str
    placement: str
    request: str
    rung: str
    limit: Limit

    @property
    def figure(self) -> str:
        """"NAME microservices checkout @ headline: p99" (the budget's name, when it has
        one, in place of the experiment's)."""
        request = "" if self.request == ALL else f" {self.request}"
        rung = f" @ {self.rung}" if figures_of(self.experiment).shows_rung else ""
        return f"{self.name or self.experiment} {self.placement}{request}{rung}: {self.limit.spec.label}"

    @property
    def label(self) -> str:
        return f"{self.figure} {self.limit.describe()}"


@dataclass(frozen=True)
class BudgetFile:
    path: str
    budgets: list[Budget]


def _num(x: float) -> str:
    return f"{x:g}"


def load_budgets(path: str | Path) -> BudgetFile:
    """Read and check a budgets file. Raises BudgetFileError naming the line and key."""
    path = Path(path)
    try:
        text = read_text_file(path)
    except TextFileError as exc:
        raise BudgetFileError(f"cannot read the budgets file {exc}") from None
    return parse_budgets(text, str(path))


def parse_budgets(text: str, filename: str = "budgets.toml") -> BudgetFile:
    """The budgets in ``text``. Raises BudgetFileError: a syntax error with tomllib's line and
    the text of that line; a schema error with the key's line and dotted key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"line (\d+)", message)
        if match:
            number = int(match.group(1))
            lines = text.splitlines()
            source = lines[number - 1].strip() if 0 < number <= len(lines) else ""
            raise BudgetFileError(f"{filename}:{number}: TOML syntax error: {message}"
                                  + (f"; the line reads: {source}" if source else "")) from None
        raise BudgetFileError(f"{filename}: TOML syntax error: {message}") from None
    return _Checker(filename, key_lines(text)).document(doc)


class _Checker:
    def __init__(self, filename: str, lines: dict[KeyPath, int]) -> None:
        self.filename = filename
        self.lines = lines

    def fail(self, path: KeyPath, message: str) -> BudgetFileError:
        line = line_of(self.lines, path)
        where = f"{self.filename}:{line}" if line else self.filename
        return BudgetFileError(f"{where}: {_dotted(path)}: {message}")

    def document(self, doc: Mapping[str, Any]) -> BudgetFile:
        for key in doc:
            if key not in ("budget", "title"):
                raise self.fail((key,), "unknown key (a budgets file has [[budget]] tables "
                                        "and an optional title)")
        entries = doc.get("budget")
        if not isinstance(entries, list) or not entries:
            raise self.fail(("budget",), "no [[budget]] tables: nothing to check")
        budgets: list[Budget] = []
        for index, entry in enumerate(entries):
            budgets += self.budget(("budget", index), entry)
        return BudgetFile(self.filename, budgets)

    def budget(self, path: KeyPath, entry: Mapping[str, Any]) -> list[Budget]:
        if not isinstance(entry, Mapping):
            raise self.fail(path, "must be a table")
        for key in entry:
            if key not in SELECTORS and key not in KINDS:
                hint = _hint(key, entry[key])
                raise self.fail(path + (key,), f"unknown key{hint}; a [[budget]] has "
                                f"{', '.join(SELECTORS)} and the tables {', '.join(KINDS)}")
        experiment = self.word(path, entry, "experiment", required=True)
        figures = figures_of(experiment)
        if figures is None:
            raise self.fail(path + ("experiment",), f"unknown experiment {experiment!r}; "
                            f"budgets know {', '.join(budgeted_experiments())}")
        name = self.word(path, entry, "name") or ""
        placements = self.words(path, entry, "placement", required=True)
        requests = self.words(path, entry, "request") or [ALL]
        rungs = self.words(path, entry, "rung") or [figures.default_rung]
        for request in requests:
            problem = None if request == ALL else figures.request_problem(request)
            if problem:
                raise self.fail(path + ("request",), problem)
        limits = [limit for kind in entry if kind in KINDS
                  for limit in self.limits(path + (kind,), kind, entry[kind], experiment, requests)]
        if not limits:
            raise self.fail(path, f"no limits: add at least one of the tables "
                                  f"{', '.join(f'[budget.{k}]' for k in KINDS)}")
        return [Budget(name, experiment, placement, request, rung, limit)
                for placement in placements for request in requests for rung in rungs
                for limit in limits if limit.spec.per_request or request == ALL]

    def word(self, path: KeyPath, entry: Mapping[str, Any], key: str,
             required: bool = False) -> str | None:
        if key not in entry:
            if required:
                raise self.fail(path, f"missing the key {key!r}")
            return None
        value = entry[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path + (key,), f"must be a non-empty string, got {value!r}")
        return value.strip()

    def words(self, path: KeyPath, entry: Mapping[str, Any], key: str,
              required: bool = False) -> list[str]:
        value = entry.get(key)
        if isinstance(value, list):
            if not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise self.fail(path + (key,), "must be a string or a non-empty list of strings")
            return list(dict.fromkeys(v.strip() for v in value))
        word = self.word(path, entry, key, required)
        return [word] if word else []

    def limits(self, path: KeyPath, kind: str, table: Any, experiment: str,
               requests: list[str]) -> list[Limit]:
        if not isinstance(table, Mapping):
            raise self.fail(path, f"must be a table of limits, e.g. [budget.{kind}]")
        options = {k: table[k] for k in OPTIONS.get(kind, set()) if k in table}
        for key, value in options.items():
            if not isinstance(value, str) or not value.strip():
                raise self.fail(path + (key,), f"must be a non-empty string, got {value!r}")
        of = options.get("of")
        known = calibrations()
        if kind == "calibrated" and of is None:
            raise self.fail(path, f"missing the key 'of': the calibration figure the limits "
                                  f"multiply ({', '.join(known)})")
        if of is not None and of not in known:
            raise self.fail(path + ("of",), f"unknown calibration figure {of!r}; known: "
                                            f"{', '.join(known)}")
        if kind == "growth" and of is not None and options.get("versus") is not None:
            raise self.fail(path + ("of",), "'of' applies to growth against --baseline, "
                                            "not to growth against 'versus'")
        out = []
        for key, value in table.items():
            if key in options:
                continue
            figures = figures_of(experiment)
            spec = figures.metric(key)
            if spec is None:
                offered = [m.name for name in budgeted_experiments()
                           for m in figures_of(name).metrics]
                if key in offered:
                    raise self.fail(path + (key,), f"{key} is not a figure of the {experiment} "
                                                   f"experiment")
                raise self.fail(path + (key,), f"unknown metric{_hint(key, value)}; known: "
                                               f"{', '.join(dict.fromkeys(offered))}")
            if kind not in spec.kinds:
                raise self.fail(path + (key,), f"{key} cannot be a {kind} limit (it can be: "
                                               f"{', '.join(spec.kinds)})")
            if not spec.per_request and ALL not in requests:
                raise self.fail(path + (key,), f"{key} is measured over all requests; list "
                                               f"{ALL!r} among this budget's requests")
            problem = figures.limit_problem(spec, requests)
            if problem:
                raise self.fail(path + (key,), problem)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise self.fail(path + (key,), f"must be a number, got {value!r}")
            if value < 0 or (value == 0 and kind != "growth"):
                raise self.fail(path + (key,), f"must be {'>= 0' if kind == 'growth' else '> 0'}, "
                                               f"got {value!r}")
            if kind == "growth" and value >= 10:
                raise self.fail(path + (key,), f"growth is a fraction (0.15 = 15%), got {value!r}")
            out.append(Limit(kind, spec, float(value), of, options.get("versus"),
                             line_of(self.lines, path + (key,)) or 0))
        return out


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"'
            out += f".{text}" if out else text
    return out


def _hint(key: str, value: Any) -> str:
    """A dotted key split by TOML: ``p99.9_ms = 1`` arrives as {"p99": {"9_ms": 1}}."""
    if isinstance(value, Mapping) and len(value) == 1:
        inner = next(iter(value))
        return f' (did you mean "{key}.{inner}"? quote a key with a dot in it)'
    return ""
