"""The harness's result model: what every experiment, the report, ``compare`` and the console share.

Everything an analysis produces is one of these types; ``summary.json`` is their
serialisation, written only at the edge (``RunSummary.to_json``) and read back by
``RunSummary.from_json``. Units are part of each field's name or docstring: latencies µs,
CPU ms per request, memory MiB.

* ``Quantile``: the one table of percentiles the harness reports, with the sample count a
  percentile needs before it is printed as a figure (10 / (1 - q), so p99 needs 1,000
  samples and p99.9 needs 10,000; fewer, and the "p99.9" is the maximum in disguise).
* ``Estimate``: a point value with its 95% interval and whether the samples support it.
* ``Ratio``: B over A from paired trials: one log ratio per trial, interval over trials.
* ``StepResult``: one measured step (experiment x placement x rung x trial) and its validity.
* ``Headline``: one line of the run's headline table, with its verdict.
* ``RunSummary``: the run: identity, environment, step validity, each experiment's result.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import exitcodes

SCHEMA = "seambench.summary/2"
CONFIDENCE = 0.95
NOT_SIGNIFICANT = "not significant"  # the one wording, everywhere

# exit codes of `seambench run`, from the one table (bench/exitcodes.py)
EXIT_OK = exitcodes.OK
EXIT_FAILED = exitcodes.TOOL_FAILED  # a process died, the generator or the report failed
EXIT_NOTHING_VALID = exitcodes.NOTHING_VALID  # finished, but a headline rests on no valid step
# finished, and an experiment found the system wrong: a fact, not a figure (money lost or
# duplicated under faults, say: ``Analysis.violations``); it wins over NOTHING_VALID
EXIT_VIOLATION = exitcodes.FINDING
EXIT_INTERRUPTED = exitcodes.INTERRUPTED


@dataclass(frozen=True)
class Quantile:
    key: str  # as in summary.json: "p50", "p99", "p99.9"
    q: float  # percent

    @property
    def min_samples(self) -> int:
        """Samples needed before this percentile is a figure and not an extreme value."""
        return math.ceil(10 / (1 - self.q / 100) - 1e-9)


QUANTILES = (Quantile("p50", 50.0), Quantile("p90", 90.0), Quantile("p99", 99.0),
             Quantile("p99.9", 99.9))
QUANTILE = {q.key: q for q in QUANTILES}


@dataclass(frozen=True)
class Estimate:
    """A point value with its 95% interval (None when it cannot be had).

    ``samples`` is how many observations the value rests on; ``supported`` is False when
    they are too few for what it is (a percentile under its ``min_samples``): such a value
    is kept in the file for the record but never printed as a figure."""

    value: float | None
    low: float | None = None
    high: float | None = None
    samples: int | None = None
    supported: bool = True

    @property
    def ci95(self) -> tuple[float, float] | None:
        return None if self.low is None or self.high is None else (self.low, self.high)

    @property
    def usable(self) -> bool:
        return self.value is not None and self.supported and math.isfinite(self.value)

    def excludes(self, x: float) -> bool:
        """The interval lies wholly on one side of ``x``."""
        return self.ci95 is not None and (self.low > x or self.high < x)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": _round(self.value), "ci95": None if self.ci95 is None
                               else [_round(self.low), _round(self.high)]}
        if self.samples is not None:
            out["samples"] = self.samples
        if not self.supported:
            out["supported"] = False
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> "Estimate":
        if not doc:
            return cls(None)
        ci = doc.get("ci95") or (None, None)
        return cls(doc.get("value"), ci[0], ci[1], doc.get("samples"), doc.get("supported", True))


@dataclass(frozen=True)
class Ratio:
    """B / A from paired trials. ``log_ratios`` holds one value per pair (trial t in which
    both sides were valid): ln(B_t / A_t) for a per-trial figure (``paired_ratio``), or the
    delete-one-trial jackknife's pseudo-value of ln(B/A) for a figure pooled over the trials
    (``ratio_over_trials``; for a mean of per-trial values the two are the same). The
    interval is exp(ln value +- t * se) with n - 1 degrees of freedom, se from those values;
    ``p_value`` is the t test of "no difference" (None with fewer than two pairs)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    log_ratios: tuple[float, ...] = ()
    p_value: float | None = None
    supported: bool = True
    note: str = ""

    @property
    def pairs(self) -> int:
        return len(self.log_ratios)

    @property
    def ci95(self) -> tuple[float, float] | None:
        return None if self.low is None or self.high is None else (self.low, self.high)

    @property
    def significant(self) -> bool:
        """The interval excludes 1.0 (never on an unsupported figure)."""
        return self.supported and self.ci95 is not None and (self.low > 1 or self.high < 1)

    def verdict_against(self, target: float) -> str:
        """"meets" only when the whole interval is at or under ``target``; "misses" when all
        of it is over; else "inconclusive". A point estimate never decides."""
        if self.ci95 is None or not self.supported:
            return "inconclusive"
        if self.high <= target:
            return "meets"
        if self.low > target:
            return "misses"
        return "inconclusive"

    def to_json(self) -> dict[str, Any]:
        return {"value": _round(self.value, 4), "ci95": None if self.ci95 is None
                else [_round(self.low, 4), _round(self.high, 4)], "pairs": self.pairs,
                "log_ratios": [round(x, 6) for x in self.log_ratios],
                "p_value": _round(self.p_value, 5), "significant": self.significant,
                "supported": self.supported, "note": self.note}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> "Ratio":
        if not doc:
            return cls(None)
        ci = doc.get("ci95") or (None, None)
        return cls(doc.get("value"), ci[0], ci[1], tuple(doc.get("log_ratios", ())),
                   doc.get("p_value"), doc.get("supported", True), doc.get("note", ""))


@dataclass(frozen=True)
class StepKey:
    experiment: str
    placement: str
    rung: str  # the rung's label, unique within its experiment, e.g. "r120" (120 req/s)
    trial: int

    @property
    def slug(self) -> str:
        return f"{self.experiment}-{self.placement}-{self.rung}-t{self.trial}"


class Invalid(str):
    """Why a step is not a measurement of the system: ``code`` for programs (stable), the
    text for people. A str, so it reads and prints as its text wherever a reason is shown."""

    code: str

    def __new__(cls, code: str, text: str) -> "Invalid":
        reason = super().__new__(cls, text)
        reason.code = code
        return reason

    @property
    def text(self) -> str:
        return str.__str__(self)

    def __reduce__(self) -> tuple:
        return Invalid, (self.code, self.text)


# The codes of the harness's own reasons (an experiment may add its own).
RATE_MISSED = "rate_missed"  # completed in time more than 2% below the schedule
ERRORS = "errors"  # errors and censored requests over 1% of the scheduled
UNMATCHED = "unmatched"  # completions that matched no request in flight (a harness bug)
LATE_SENDS = "late_sends"  # the generator sent late (p99 over its limit)
LATE_RELATIVE = "late_relative"  # sends late relative to the latency measured
GENERATOR_BUSY = "generator_busy"  # a generator process used more than 85% of a core
OUT_OF_RANGE = "out_of_range"  # a latency outside the histograms' range
GENERATOR_FAILED = "generator_failed"  # a generator process did not complete
NOT_STEADY = "not_steady"  # latency grew through the window: a queue, not a latency
# a deployed placement's /metrics could not be read often enough to give its CPU and memory
RESOURCES_UNREAD = "resources_unread"
UNKNOWN = "unknown"  # read back from a run that recorded no code

# Reasons that are the harness's, not the system's: such a step was not measured (it is run
# again at the end of the run, once), and it is never evidence that the system missed.
HARNESS_CODES = frozenset({UNMATCHED, LATE_SENDS, LATE_RELATIVE, GENERATOR_BUSY, OUT_OF_RANGE,
                           GENERATOR_FAILED, RESOURCES_UNREAD})


@dataclass
class StepResult:
    """One measured step. Counts are of the measured window (warm-up excluded); a step is
    valid only with no ``invalid_reasons``, and only valid steps enter an estimate."""

    key: StepKey
    rate: float  # scheduled arrivals per second
    seed: int
    scheduled: int = 0
    completed: int = 0
    completed_in_time: int = 0
    errors: int = 0
    dropped: int = 0
    unfinished: int = 0
    censored: int = 0  # dropped + unfinished, recorded in the tail at their lower bound
    served: int = 0  # requests that reached the system under test (floors excluded)
    duration_s: float = 0.0
    system_cpu_s: float = 0.0
    system_pss_mib: float | None = None
    system_rss_mib: float | None = None
    generator_cpu: float = 0.0  # cores' worth, the busiest generator process
    lateness_p99_us: int = 0
    latency_p99_us: int = 0
    invalid_reasons: list[Invalid] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # experiment-specific figures
    raw_dir: str = ""  # the step's files, relative to the run directory

    def __post_init__(self) -> None:
        if not self.raw_dir:
            self.raw_dir = f"raw/{self.key.slug}"

    @property
    def valid(self) -> bool:
        return not self.invalid_reasons

    @property
    def spoiled(self) -> bool:
        """Invalid for the harness's reasons (``HARNESS_CODES``): not a measurement at all."""
        return any(getattr(r, "code", UNKNOWN) in HARNESS_CODES for r in self.invalid_reasons)

    @property
    def error_rate(self) -> float:
        return (self.errors + self.censored) / self.scheduled if self.scheduled else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        return self.system_cpu_s * 1000 / self.served if self.served else None

    def to_row(self) -> dict[str, Any]:
        """A flat row for steps.csv."""
        row = {**asdict(self.key), "slug": self.key.slug, "rate": self.rate, "seed": self.seed,
               # "; " separates the reasons: a reason's own is written ", " so each keeps its code
               "valid": self.valid,
               "invalid_reasons": "; ".join(str(r).replace("; ", ", ") for r in self.invalid_reasons),
               "invalid_codes": " ".join(getattr(r, "code", UNKNOWN) for r in self.invalid_reasons)}
        for name in ("scheduled", "completed", "completed_in_time", "errors", "dropped",
                     "unfinished", "censored", "served", "duration_s", "system_cpu_s",
                     "system_pss_mib", "system_rss_mib", "generator_cpu", "lateness_p99_us",
                     "latency_p99_us"):
            row[name] = getattr(self, name)
        row["cpu_ms_per_request"] = self.cpu_ms_per_request
        row["raw_dir"] = self.raw_dir
        row.update(self.extra)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "StepResult":
        """Back from a steps.csv row (as pandas or csv read it). Rows of schema-1 runs (no
        ``rung`` column, ``shop_completed`` and ``system_rss_max_bytes``) are understood too."""
        def num(name: str, default: Any = 0) -> Any:
            value = row.get(name, default)
            return default if value is None or (isinstance(value, float) and math.isnan(value)) \
                else value
        experiment, rate = str(row["experiment"]), float(row["rate"])
        rung = num("rung", "")  # none in schema 1: the reader asks the experiment (legacy_rung)
        texts = [r for r in str(num("invalid_reasons", "") or "").split("; ") if r]
        codes = str(num("invalid_codes", "") or "").split()
        if len(codes) != len(texts):  # older runs recorded no codes
            codes = [UNKNOWN] * len(texts)
        known = {"experiment", "placement", "rung", "trial", "slug", "rate", "seed", "valid",
                 "invalid_reasons", "invalid_codes", "raw_dir", "cpu_ms_per_request"}
        step = cls(StepKey(experiment, str(row["placement"]), str(rung), int(row["trial"])),
                   rate, int(num("seed")), raw_dir=str(num("raw_dir", "")),
                   invalid_reasons=[Invalid(c, t) for c, t in zip(codes, texts)])
        for name in ("scheduled", "completed", "completed_in_time", "errors", "dropped",
                     "unfinished", "censored", "served", "lateness_p99_us", "latency_p99_us"):
            setattr(step, name, int(num(name)))
        for name in ("duration_s", "system_cpu_s", "generator_cpu"):
            setattr(step, name, float(num(name)))
        step.system_pss_mib = num("system_pss_mib", None)
        step.system_rss_mib = num("system_rss_mib", None)
        if "shop_completed" in row:  # schema 1
            step.served = int(num("shop_completed"))
            rss = num("system_rss_max_bytes", None)
            step.system_rss_mib = None if rss is None else float(rss) / 2**20
        if not bool(num("valid", True)) and not step.invalid_reasons:
            step.invalid_reasons = [Invalid(UNKNOWN, "invalid (no reason recorded)")]
        step.extra = {k: v for k, v in row.items() if k not in known and not hasattr(step, k)
                      and k not in ("shop_completed", "system_rss_max_bytes")}
        return step


@dataclass(frozen=True)
class Headline:
    """One row of the headline table. ``kind``: "ratio" (x), "latency" (µs), "cpu" (ms),
    "text". ``verdict`` is said out loud next to the figure ("not significant", "meets
    target <= 1.3x", "inconclusive: ...")."""

    label: str
    kind: str
    estimate: Estimate | None = None
    ratio: Ratio | None = None
    text: str = ""
    verdict: str = ""
    per_trial: tuple[float, ...] = ()  # the figure in each valid trial (for ``compare``'s test)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind,
                "estimate": None if self.estimate is None else self.estimate.to_json(),
                "ratio": None if self.ratio is None else self.ratio.to_json(),
                "text": self.text, "verdict": self.verdict, "per_trial": list(self.per_trial)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "Headline":
        return cls(doc["label"], doc["kind"],
                   Estimate.from_json(doc["estimate"]) if doc.get("estimate") else None,
                   Ratio.from_json(doc["ratio"]) if doc.get("ratio") else None,
                   doc.get("text", ""), doc.get("verdict", ""), tuple(doc.get("per_trial", ())))


@dataclass
class RunSummary:
    """The whole analysed run. ``experiments`` maps an experiment's name to its result as
    that experiment serialised it (each experiment module owns its own result type and
    reads it back); everything else is common to all experiments."""

    run_id: str
    complete: bool
    placements: list[str]
    profile: str
    trials: int
    seed: int | None
    environment: dict[str, Any]
    cpu_note: str
    steps: list[dict[str, Any]]  # steps.csv rows (validity and counts per step)
    experiments: dict[str, dict[str, Any]]
    headlines: list[Headline]
    warnings: list[str]
    invalid_steps: list[str]
    exit_code: int = 0  # what `seambench run` exits with (see bench.run.EXIT_CODES)

    @property
    def baseline(self) -> str | None:
        return self.placements[0] if self.placements else None

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "run_id": self.run_id, "complete": self.complete,
                "placements": self.placements, "baseline": self.baseline,
                "profile": self.profile, "trials": self.trials, "seed": self.seed,
                "confidence": CONFIDENCE, "environment": self.environment,
                "cpu_note": self.cpu_note, "exit_code": self.exit_code,
                "headlines": [h.to_json() for h in self.headlines],
                "warnings": self.warnings, "invalid_steps": self.invalid_steps,
                "experiments": self.experiments, "steps": self.steps}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "RunSummary":
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"summary schema {doc.get('schema')!r} is not {SCHEMA!r}: rebuild "
                             "it with `seambench report DIR`")
        return cls(doc["run_id"], doc["complete"], list(doc["placements"]), doc["profile"],
                   doc["trials"], doc.get("seed"), doc.get("environment", {}),
                   doc.get("cpu_note", ""), list(doc.get("steps", [])),
                   dict(doc.get("experiments", {})),
                   [Headline.from_json(h) for h in doc.get("headlines", [])],
                   list(doc.get("warnings", [])), list(doc.get("invalid_steps", [])),
                   int(doc.get("exit_code", 0)))

    def headline(self, label_start: str) -> Headline | None:
        return next((h for h in self.headlines if h.label.startswith(label_start)), None)


def _round(x: float | None, digits: int = 2) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def estimates_to_json(estimates: Mapping[str, Estimate]) -> dict[str, Any]:
    return {key: e.to_json() for key, e in estimates.items()}

