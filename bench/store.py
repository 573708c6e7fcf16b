"""The results directory of one run, and how it is written.

    results/<run-id>/
      manifest.json     fingerprint, full config, seeds, CPU plan, start/end, complete or not
      steps.csv         one row per measured step (experiment x placement x rate x trial)
      requests.csv      one row per step and request name: counts, percentiles in µs
      floors.csv        raw TCP / raw HTTP round trips per trial, percentiles in µs
      timeseries.csv    per second, step and request name: completed, errors, p50/p99/max µs
      resources.csv     psutil samples: CPU seconds and RSS of every process, per step
      histograms.hlog   every step's total histograms, tagged (HdrHistogram log format 1.3)
      raw/<step>/       each step's generator files: plan, interval log (1 s histograms), log
      parts/<table>/    timeseries and resources, one file per step (put together at the end)
      summary.json      the headline figures with confidence intervals (see analysis.py)
      report.md, report.html, figures/*.png

Every file is written whole and renamed into place, so a reader (or an interrupted run)
sees the previous version or the new one, never half of one. Analysis reads only these.
The long tables (time series, resource samples) grow with the run, so they are not kept in
memory: each step's rows go to their own part file, and the parts are put together when the
run ends (or when ``seambench report`` finds them not yet put together).
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

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
STEPS = "steps.csv"
REQUESTS = "requests.csv"
FLOORS = "floors.csv"
TIMESERIES = "timeseries.csv"
RESOURCES = "resources.csv"
HISTOGRAMS = "histograms.hlog"
STREAMED = (TIMESERIES, RESOURCES)  # written per step as parts, assembled at the end


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
        self.tables: dict[str, list[dict[str, Any]]] = {STEPS: [], REQUESTS: [], FLOORS: []}
        self._parts = {table: 0 for table in STREAMED}
        self.histogram_lines: list[str] = []

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

    def add_histogram(self, tag: str, start_s: float, length_s: float, payload: str,
                      max_ms: float) -> None:
        self.histogram_lines.append(f"Tag={tag},{start_s:.3f},{length_s:.3f},{max_ms:.3f},{payload}\n")

    def flush(self) -> None:
        """Rewrite every table (each file atomically)."""
        for name, rows in self.tables.items():
            if rows:
                write_text_atomic(self.path(name), csv_text(rows))
        if self.histogram_lines:
            head = ("#seambench step totals, latency in us (HdrHistogram log format 1.3)\n"
                    "#[Histogram log format version 1.3]\n"
                    f"#[StartTime: {self.manifest.get('started_at', 0):.3f} (seconds since epoch)]\n"
                    '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
            write_text_atomic(self.path(HISTOGRAMS), head + "".join(self.histogram_lines))

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
