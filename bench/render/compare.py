"""Two runs side by side: each headline figure of run A and run B, the change B/A, and a test.

Two runs are independent (different times, maybe different machines), so their figures are
compared with Welch's t test over the per-trial values each summary keeps (a ratio's log
ratios; an estimate's per-trial values, on a log scale when positive): "no clear change"
when p >= 0.05, otherwise which way B moved, with the p-value. A figure without per-trial
values in both runs gets no verdict, said as such, never one from overlapping intervals.
Runs that measured different things are still compared where they overlap, with a warning.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.render import display
from bench.render.document import Table, md_escape, to_markdown
from bench.results.model import SCHEMA, Headline, RunSummary
from bench.results.stats import unpaired_change
from bench.results.store import SUMMARY, read_json

NO_CLEAR_CHANGE = "no clear change"
ALPHA = 0.05


@dataclass(frozen=True)
class Row:
    label: str
    a: Headline | None
    b: Headline | None
    change: float | None  # B / A of the values
    p_value: float | None
    verdict: str


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    rows: list[Row]
    warnings: list[str]


def load_summary(run_dir: str | Path) -> RunSummary:
    """The run's summary.json, or (when it has none, an unreadable one or an older schema)
    the summary computed from its raw files in memory, writing nothing. Raises
    FileNotFoundError when ``run_dir`` is not a run."""
    from bench.results.summary import summarize
    try:
        return RunSummary.from_json(read_json(Path(run_dir) / SUMMARY))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return summarize(run_dir)


def _value(h: Headline | None) -> float | None:
    if h is None:
        return None
    if h.ratio is not None:
        return h.ratio.value
    if h.estimate is not None and h.estimate.supported:
        return h.estimate.value
    return None


def _trial_logs(h: Headline) -> list[float]:
    if h.ratio is not None:
        return list(h.ratio.log_ratios)
    values = list(h.per_trial)
    if values and all(v > 0 for v in values):
        return [math.log(v) for v in values]
    return values


def verdict(a: Headline | None, b: Headline | None) -> tuple[str, float | None]:
    """(verdict, p-value) for one figure of two runs."""
    if a is None:
        return "only in B", None
    if b is None:
        return "only in A", None
    if a.kind == "text" or b.kind == "text":
        return ("same" if a.text == b.text else "differs"), None
    if _value(a) is None or _value(b) is None:
        return "not measured in both", None
    p = unpaired_change(_trial_logs(a), _trial_logs(b))
    if p is None:
        return "no test: fewer than two valid trials in a run", None
    if p >= ALPHA:
        return NO_CLEAR_CHANGE, p
    return ("B higher" if _value(b) > _value(a) else "B lower"), p


def mismatches(a: RunSummary, b: RunSummary) -> list[str]:
    """One line per way the two runs measured different things (or cannot be trusted)."""
    out = []
    for name, s in (("A", a), ("B", b)):
        if not s.complete:
            out.append(f"run {name} ({s.run_id}) is INCOMPLETE")
    for attr, what in (("placements", "placements"), ("profile", "profile"),
                       ("trials", "trials per step")):
        if getattr(a, attr) != getattr(b, attr):
            out.append(f"{what} differ: A has {_describe(getattr(a, attr))}; "
                       f"B has {_describe(getattr(b, attr))}")
    for key in ("cpu_model", "cpu_count", "kernel"):
        if a.environment.get(key) != b.environment.get(key):
            out.append(f"environments differ in {key}: A {a.environment.get(key)!r}, "
                       f"B {b.environment.get(key)!r}")
    return out


def _describe(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def compare(a: RunSummary, b: RunSummary) -> Comparison:
    """A row per headline figure of either run (A's order, then figures only B has)."""
    heads_a = {h.label: h for h in a.headlines}
    heads_b = {h.label: h for h in b.headlines}
    rows = []
    for label in dict.fromkeys([*heads_a, *heads_b]):
        ha, hb = heads_a.get(label), heads_b.get(label)
        va, vb = _value(ha), _value(hb)
        change = vb / va if va and vb is not None else None
        text, p = verdict(ha, hb)
        rows.append(Row(label, ha, hb, change, p, text))
    return Comparison(a.run_id, b.run_id, rows, mismatches(a, b))


def _cells(h: Headline | None) -> tuple[str, str]:
    if h is None:
        return "n/a", ""
    value, ci, _ = display.headline_cells(h)
    return value, ci


def table_rows(comparison: Comparison) -> list[list[str]]:
    out = []
    for row in comparison.rows:
        (va, ca), (vb, cb) = _cells(row.a), _cells(row.b)
        verdict_text = row.verdict if row.p_value is None else f"{row.verdict} (p={row.p_value:.3f})"
        out.append([row.label, va, ca, vb, cb,
                    "" if row.change is None else f"{row.change:.2f}x", verdict_text])
    return out


COLUMNS = ["figure", "A", "A 95% CI", "B", "B 95% CI", "B/A", "verdict"]


def render_text(comparison: Comparison) -> str:
    """A fixed-width table for the terminal, warnings (prefixed "warning:") first."""
    lines = [f"warning: {w}" for w in comparison.warnings]
    lines += [f"A = run {comparison.run_a}", f"B = run {comparison.run_b}"]
    rows: Sequence[list[str]] = [COLUMNS, *table_rows(comparison)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    for index, row in enumerate(rows):
        cells = [c.ljust(w) if i in (0, len(COLUMNS) - 1) else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def render_markdown(comparison: Comparison) -> str:
    """The same table as GitHub-flavoured Markdown, with the warnings as a list."""
    out = [f"# seambench compare: A = {md_escape(comparison.run_a)}, B = {md_escape(comparison.run_b)}",
           ""]
    if comparison.warnings:
        out += [f"- warning: {md_escape(w)}" for w in comparison.warnings] + [""]
    out.append(f"Verdicts are Welch's t test over the runs' per-trial values (log scale), "
               f"\"{NO_CLEAR_CHANGE}\" when p >= {ALPHA}; intervals are each run's own 95% CIs "
               f"(summary schema {SCHEMA}).")
    out.append("")
    out.append(to_markdown([Table(COLUMNS, table_rows(comparison), "lrrrrrl")]))
    return "\n".join(out)
