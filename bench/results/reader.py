"""The one reader of a results directory: load a run once, hand out what analysis needs.

Summary, report and compare all go through ``load_run``; nothing else opens a run's files.
Latencies come only from the interval logs (µs HdrHistograms); steps.csv gives each step's
counts and validity. Runs written before schema 2 (floors in floors.csv, notification lag
in histograms.hlog) are read too, so ``seambench report`` can rebuild them.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.load.recorder import tag_of
from bench.results import hdr
from bench.results.model import StepResult
from bench.results.stats import Blocks
from bench.results.store import CALLS, HARNESS_LOG, MANIFEST, STEPS, read_json
from shop.topology import Topology

if TYPE_CHECKING:
    from bench.experiments.base import Experiment

LEGACY_FLOORS = "floors.csv"  # schema 1: base64 histograms in a column
LEGACY_HISTOGRAMS = "histograms.hlog"  # schema 1: step totals, notification lag among them
Key = tuple[str, float]  # (log file name, interval start): the same block across names
SYSTEM_LOG = re.compile(r"intervals-\d+\.hlog")  # a generator's (LoadPlan.interval_log_path)
OBSERVED_PART = "-observed-"  # ... and what its requests' answers reported (observed_log_path)
LEGACY_REFERENCE_TAG = "floor_"


@dataclass
class RunData:
    """One run as analysis sees it: its manifest, its steps and, read on demand and kept,
    its interval logs. The only way anything reads a run's files; never talks to a service."""

    dir: Path
    manifest: dict[str, Any]
    steps: list[StepResult]
    _intervals: dict[str, dict[str, dict[Key, HdrHistogram]]] = field(default_factory=dict)
    _calls: list[dict[str, str]] | None = None

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    @property
    def placements(self) -> list[str]:
        return [t["name"] for t in self.config.get("topologies", [])]

    def pairs(self) -> list[tuple[str, str]]:
        """The (numerator, denominator) placements of the run's paired ratios: each placement
        over the first (the baseline), then the comparisons the run asked for."""
        names = self.placements
        pairs = [(other, names[0]) for other in names[1:]]
        asked = [(a, b) for a, b in self.config.get("comparisons", []) if a in names and b in names]
        return list(dict.fromkeys(pairs + asked))

    @property
    def experiments(self) -> list[str]:
        """The experiments the run was configured with (schema 1 recorded none: those that
        have steps, in the order they first ran)."""
        return list(self.config.get("experiments", {})
                    or dict.fromkeys(s.key.experiment for s in self.steps))

    def settings(self, experiment: str) -> dict[str, Any]:
        """An experiment's settings as the manifest recorded them (plain data)."""
        return dict(self.config.get("experiments", {}).get(experiment, {}))

    def settings_of(self, experiment: "Experiment") -> Any:
        """``experiment``'s settings as the run recorded them, as its own settings type; a
        field the run did not record (a run older than the field) is the run's profile's."""
        return experiment.recorded_settings(self.settings(experiment.name),
                                            self.config.get("profile", {}).get("name", "quick"))

    def topology(self, placement: str) -> Topology:
        """The topology ``placement`` ran, as the manifest recorded it."""
        return Topology.from_dict(
            next(t for t in self.config.get("topologies", []) if t["name"] == placement))

    def steps_of(self, experiment: str, placement: str | None = None, rung: str | None = None,
                 valid_only: bool = False) -> list[StepResult]:
        return [s for s in self.steps if s.key.experiment == experiment
                and placement in (None, s.key.placement) and rung in (None, s.key.rung)
                and (s.valid or not valid_only)]

    def calls(self, steps: Sequence[StepResult]) -> dict[str, dict[tuple[str, str], int]]:
        """What the shop's servers counted during ``steps`` (summed): server -> (kind, name)
        -> count, kind "request" by route, "hop" and "hop_error" by dependency. Empty for a
        run without calls.csv (older runs, or a shop that did not answer)."""
        if self._calls is None:
            path = self.dir / CALLS
            self._calls = []
            if path.is_file() and path.stat().st_size:
                with open(path, newline="") as f:
                    self._calls = list(csv.DictReader(f))
        slugs = {s.key.slug for s in steps}
        out: dict[str, dict[tuple[str, str], int]] = {}
        for row in self._calls:
            if row.get("slug") in slugs:
                per = out.setdefault(row["server"], {})
                key = (row["kind"], row["name"])
                per[key] = per.get(key, 0) + int(row["count"])
        return out

    def rungs(self, experiment: str) -> list[tuple[str, float]]:
        """(label, rate) of each rung of ``experiment`` in the order first run."""
        return list(dict.fromkeys((s.key.rung, s.rate) for s in self.steps
                                  if s.key.experiment == experiment))

    # -- histograms --------------------------------------------------------------------
    def intervals(self, raw_dir: str) -> dict[str, dict[Key, HdrHistogram]]:
        """Every interval histogram under ``raw_dir`` (relative to the run): tag -> block
        key -> histogram, read once and kept."""
        if raw_dir not in self._intervals:
            per_tag: dict[str, dict[Key, HdrHistogram]] = {}
            for log in sorted((self.dir / raw_dir).glob("intervals-*.hlog")):
                for iv in hdr.read_interval_log(log):
                    per_tag.setdefault(iv.tag, {})[(log.name, iv.start_s)] = iv.histogram
            self._intervals[raw_dir] = per_tag
        return self._intervals[raw_dir]

    def histogram(self, step: StepResult, names: Iterable[str] | None = None) -> HdrHistogram:
        """A step's histogram of the named requests, every second added. None: every request
        to the system under test, which are the generators' own logs (intervals-<n>.hlog):
        not the harness's series (HARNESS_LOG) nor requests sent past the system
        (LoadPlan.reference)."""
        tags = None if names is None else {tag_of(n) for n in names}
        return hdr.merge(h for tag, blocks in self.intervals(step.raw_dir).items()
                         if tags is None or tag in tags
                         for key, h in blocks.items()
                         if tags is not None or _of_the_system(key[0], tag))

    def histogram_of(self, steps: Sequence[StepResult], names: Iterable[str] | None = None) -> HdrHistogram:
        """Several steps' ``histogram`` added (e.g. every valid trial of one rung)."""
        return hdr.merge(self.histogram(s, names) for s in steps)

    def blocks(self, steps: Sequence[StepResult], names: Sequence[str]) -> dict[str, Blocks]:
        """Each name's interval histograms over ``steps`` (the trials of one rung) as Blocks
        aligned across names: block i is the same second of the same step (and generator
        process) for every name, its stratum the step's trial; what the requests' answers
        reported (the observed log) shares the seconds of the requests. Empty when nothing
        was recorded."""
        tags = {name: tag_of(name) for name in names}
        keyed: dict[str, dict[tuple, HdrHistogram]] = {name: {} for name in names}
        for step in steps:
            logged = self.intervals(step.raw_dir)
            for name, tag in tags.items():
                for (log_name, start_s), h in logged.get(tag, {}).items():
                    log_name = log_name.replace(OBSERVED_PART, "-")
                    keyed[name][(step.key.trial, step.raw_dir, log_name, start_s)] = h
        return aligned_blocks(keyed)

    def harness_series(self, raw_dir: str, tag: str) -> list[HdrHistogram]:
        """A series the harness wrote (floors' blocks, notification lag), in order."""
        found = self.intervals(raw_dir).get(tag, {})
        return [found[k] for k in sorted(found, key=lambda k: k[1]) if k[0] == HARNESS_LOG]

    def floor_blocks(self, trial: int, kind: str) -> list[HdrHistogram]:
        """Trial ``trial``'s floor round trips of ``kind`` (tcp, http, http_nested) as blocks
        of consecutive calls (µs)."""
        blocks = self.harness_series(f"raw/floors-t{trial}", f"floor_{kind}")
        return blocks or self._legacy_floors.get((trial, kind), [])

    def notification_lag(self, step: StepResult) -> HdrHistogram | None:
        series = self.harness_series(step.raw_dir, "notification_lag")
        if series:
            return hdr.merge(series)
        legacy = self._legacy_lag.get(step.raw_dir)
        return legacy

    @cached_property
    def _legacy_floors(self) -> dict[tuple[int, str], list[HdrHistogram]]:
        path = self.dir / LEGACY_FLOORS
        out: dict[tuple[int, str], list[HdrHistogram]] = {}
        if path.is_file() and path.stat().st_size:
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    out.setdefault((int(row["trial"]), row["floor"]), []).append(
                        hdr.decode(row["histogram"]))
        return out

    @cached_property
    def _legacy_lag(self) -> dict[str, HdrHistogram]:
        path = self.dir / LEGACY_HISTOGRAMS
        out: dict[str, HdrHistogram] = {}
        if path.is_file():
            for iv in hdr.read_interval_log(path):
                fields = iv.tag.split("/")
                if len(fields) == 5 and fields[4] == "notification_lag":
                    experiment, placement, rate, trial, _ = fields
                    out[f"raw/{experiment}-{placement}-{rate}-{trial}"] = iv.histogram
        return out


def _of_the_system(log_name: str, tag: str) -> bool:
    """Whether the interval log ``log_name`` holds requests to the system under test. Before
    reference logs existed (runs of schema 2 and older), the one series sent past the system
    was the hop floors', tagged "floor_*", in the generators' own logs."""
    return bool(SYSTEM_LOG.fullmatch(log_name)) and not tag.startswith(LEGACY_REFERENCE_TAG)


def aligned_blocks(keyed: dict[str, dict[tuple, HdrHistogram]]) -> dict[str, Blocks]:
    """name -> {(stratum, ...): histogram} as Blocks over the union of keys (a missing key
    is an empty block) and the union of non-empty buckets, so names can be added."""
    keys = sorted({k for per in keyed.values() for k in per})
    if not keys:
        return {}
    empty = hdr.new_histogram()
    dense = {name: [per.get(k, empty) for k in keys] for name, per in keyed.items()}
    union = np.zeros(empty.counts_len, dtype=np.int64)
    for histograms in dense.values():
        for h in histograms:
            union += np.ctypeslib.as_array(h.counts).astype(np.int64)
    buckets = np.flatnonzero(union)
    strata = [k[0] for k in keys]
    return {name: Blocks.from_histograms(dense[name], strata, buckets) for name in keyed}


def load_run(run_dir: str | Path) -> RunData:
    """Read a run's manifest and steps. Raises FileNotFoundError for a directory that is not
    a seambench run."""
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).exists():
        raise FileNotFoundError(f"{run_dir} is not a seambench run (no {MANIFEST})")
    steps: list[StepResult] = []
    path = run_dir / STEPS
    if path.is_file() and path.stat().st_size:
        with open(path, newline="") as f:
            steps = [_with_rung(StepResult.from_row(_typed(row))) for row in csv.DictReader(f)]
    return RunData(run_dir, read_json(run_dir / MANIFEST), steps)


def _with_rung(step: StepResult) -> StepResult:
    """A schema-1 step recorded only its rate: its experiment names the rung."""
    if not step.key.rung:
        from bench.experiments import get  # the registry loads experiments, which read runs
        step.key = replace(step.key, rung=get(step.key.experiment).legacy_rung(step.rate))
    return step


def _typed(row: dict[str, str]) -> dict[str, Any]:
    """csv gives strings: numbers back to numbers, "True"/"False" to bools, "" to None."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value == "":
            out[key] = None
        elif value in ("True", "False"):
            out[key] = value == "True"
        else:
            try:
                out[key] = int(value)
            except ValueError:
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
    return out
