"""The results directory of one run, and how it is written.

    results/<run-id>/
      manifest.json     fingerprint, full config, seeds, CPU plan, start/end, complete or not
      steps.csv         one row per measured step: counts, validity and its reasons, CPU, memory
      raw/<step>/       each step's files: the generators' plans, logs and one-second interval
                        histograms (intervals-*.hlog), and what the harness measured around the
                        step (intervals-harness.hlog: notification lag, for example)
      raw/floors-t<n>/  the hop experiment's floors of trial n, as interval logs too
      resources.csv     resource samples (CPU seconds, memory) of every process, per step
      traces/<p>/       with --trace: each traced placement's spans, OTLP JSON lines
      calls.csv         per step and server, from its /metrics: requests by route, hops and
                        failed hops by dependency
      parts/<table>/    resources, one file per step (put together at the end)
      summary.json      the analysed run (bench.results.model.RunSummary; see docs/commands.md)
      report.md, report.html, figures/*.png

Latency is stored one way only: tagged HdrHistogram interval logs (log format 1.3, µs). They
are the source of truth; every percentile, interval and figure is read from them, and
``bench.results.reader`` is the one reader. Every file is written whole and renamed into place, so a
reader (or an interrupted run) sees the previous version or the new one, never half of one.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.results.hdr import IntervalLogWriter
from bench.results.model import StepResult

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
STEPS = "steps.csv"
RESOURCES = "resources.csv"
CALLS = "calls.csv"  # per step and server: requests answered, hops made, hops failed
TRACES_DIR = "traces"  # a traced placement's spans: traces/<placement>/spans-*.jsonl (OTLP JSON)
HARNESS_LOG = "intervals-harness.hlog"  # in a step's raw directory: what the harness measured
STREAMED = (RESOURCES,)  # written per step as parts, assembled at the end


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (fsynced first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, document: Any) -> None:
    write_text_atomic(path, json.dumps(document, indent=1, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def csv_text(rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None) -> str:
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 10000:04d}"


class RunStore:
    """Accumulates a run's tables in memory and rewrites each file whole after every step,
    so whatever point a run stops at, the directory is consistent."""

    def __init__(self, root: str | Path, run_id: str | None = None) -> None:
        self.run_id = run_id or new_run_id()
        self.dir = Path(root) / self.run_id
        self.dir.mkdir(parents=True, exist_ok=False)
        self.manifest: dict[str, Any] = {"run_id": self.run_id, "complete": False}
        self.tables: dict[str, list[dict[str, Any]]] = {STEPS: [], CALLS: []}
        self._parts = {table: 0 for table in STREAMED}

    def path(self, name: str) -> Path:
        return self.dir / name

    def raw_dir(self, step_slug: str) -> Path:
        path = self.dir / "raw" / step_slug
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, manifest: Mapping[str, Any]) -> None:
        self.manifest.update(manifest, started_at=time.time(), complete=False)
        write_json_atomic(self.path(MANIFEST), self.manifest)

    def add_rows(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        if table in STREAMED:
            rows = list(rows)
            if rows:
                self._parts[table] += 1
                write_text_atomic(self.dir / "parts" / table / f"{self._parts[table]:05d}.csv",
                                  csv_text(rows))
            return
        self.tables[table].extend(dict(r) for r in rows)

    def add_step(self, step: StepResult) -> None:
        """One measured step's row of steps.csv (written at the next ``flush``)."""
        self.tables[STEPS].append(step.to_row())

    def add_harness_histograms(self, raw_dir: str, series: Mapping[str, Iterable[HdrHistogram]],
                               start_epoch_s: float, comment: str) -> None:
        """Write ``raw_dir``/intervals-harness.hlog (atomically): for each tag, its histograms
        (µs) as consecutive intervals of one unit starting at 0 (seconds for a time series,
        blocks of calls for the floors)."""
        out = io.StringIO()
        log = IntervalLogWriter(out, start_epoch_s, comment)
        for tag, histograms in series.items():
            for i, histogram in enumerate(histograms):
                log.write(tag, float(i), 1.0, histogram)
        write_text_atomic(self.dir / raw_dir / HARNESS_LOG, out.getvalue())

    def flush(self) -> None:
        """Rewrite every table (each file atomically)."""
        for name, rows in self.tables.items():
            if rows:
                write_text_atomic(self.path(name), csv_text(rows))

    def finish(self, complete: bool, reason: str = "") -> None:
        self.flush()
        assemble_parts(self.dir)
        self.manifest.update(complete=complete, ended_at=time.time())
        if reason:
            self.manifest["incomplete_reason"] = reason
        write_json_atomic(self.path(MANIFEST), self.manifest)


def assemble_parts(run_dir: str | Path) -> None:
    """Put each streamed table's part files together into the table (atomically), reading
    one part at a time. Idempotent: the parts stay, and the table is rebuilt from them."""
    run_dir = Path(run_dir)
    for table in STREAMED:
        parts = sorted((run_dir / "parts" / table).glob("*.csv"))
        if not parts:
            continue
        columns: dict[str, None] = {}
        for part in parts:
            with open(part, newline="") as f:
                columns.update(dict.fromkeys(next(csv.reader(f), [])))
        target = run_dir / table
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
            writer.writeheader()
            for part in parts:
                with open(part, newline="") as f:
                    writer.writerows(csv.DictReader(f))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
