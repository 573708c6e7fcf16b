"""Runs side by side: each headline figure of side A and side B, the change B/A, and a test.

Two runs of one build differ by more than their own intervals say: the machine is not the
same from one run to the next. So a test counts run-to-run variance, in one of two ways:

* several runs a side (``compare(A1, A2, .., against=(B1, B2, ..))``): each run is one
  value, and Welch's t test over the runs' log values measures the variance between runs;
* one run a side: each run's own standard error (from the per-trial values its summary
  keeps: a ratio's pseudo-values, an estimate's per-trial values, on a log scale) plus
  ``RUN_TO_RUN_SD`` for each run, an allowance measured on this project's machine, in a
  normal test.

Every figure tested in one comparison is one of a family: the p-values are adjusted by
Holm's step-down method, so "B higher" or "B lower" is said only where the adjusted p is
under 0.05, and "no clear change" otherwise. A figure without per-trial values in a run gets
no verdict, said as such, never one from overlapping intervals. Runs that measured
different things are still compared where they overlap, with a warning.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scipy.stats import norm

from bench.render import display
from bench.render.document import Table, md_escape, to_markdown
from bench.results.model import SCHEMA, Headline, RunSummary
from bench.results.stats import unpaired_change
from bench.results.store import SUMMARY, read_json

NO_CLEAR_CHANGE = "no clear change"
ALPHA = 0.05
# The standard deviation, on the log scale, of a headline figure between runs of one build on
# this project's 2-core machine, beyond what each run's interval holds: measured from three
# default runs of one commit (docs/methodology.md, "Comparing runs").
RUN_TO_RUN_SD = 0.05


@dataclass(frozen=True)
class Row:
    label: str
    a: Headline | None  # the figure in the first run of side A
    b: Headline | None
    change: float | None  # B / A of the values (geometric means over a side's runs)
    p_value: float | None  # Holm-adjusted over the figures tested together
    verdict: str
    raw_p_value: float | None = None


@dataclass(frozen=True)
class Comparison:
    run_a: str  # the side's run ids, comma-separated
    run_b: str
    rows: list[Row]
    warnings: list[str]
    method: str = ""


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


def log_and_se(h: Headline) -> tuple[float, float] | None:
    """A figure's log value and its within-run standard error (from its per-trial values),
    or None when it has no positive value or fewer than two trials."""
    value = _value(h)
    logs = _trial_logs(h)
    if value is None or value <= 0 or len(logs) < 2:
        return None
    return math.log(value), statistics.stdev(logs) / math.sqrt(len(logs))


def single_run_p(a: Headline, b: Headline, run_sd: float = RUN_TO_RUN_SD) -> float | None:
    """Two-sided p of "the same figure" for one run a side: the runs' log values apart by
    more than their standard errors and a run-to-run allowance ``run_sd`` each allow."""
    la, lb = log_and_se(a), log_and_se(b)
    if la is None or lb is None:
        return None
    scale = math.sqrt(la[1] ** 2 + lb[1] ** 2 + 2 * run_sd ** 2)
    return 1.0 if scale == 0 else float(2 * norm.sf(abs(lb[0] - la[0]) / scale))


def verdict(a: Sequence[Headline | None], b: Sequence[Headline | None]) -> tuple[str, float | None]:
    """(verdict, unadjusted p-value) for one figure of each side's runs."""
    if all(h is None for h in a):
        return "only in B", None
    if all(h is None for h in b):
        return "only in A", None
    if any(h is None for h in (*a, *b)):
        return "not in every run", None
    if a[0].kind == "text" or b[0].kind == "text":
        return ("same" if {h.text for h in (*a, *b)} == {a[0].text} else "differs"), None
    if any(_value(h) is None for h in (*a, *b)):
        return "not measured in every run", None
    if len(a) > 1 and len(b) > 1:
        p = unpaired_change([math.log(_value(h)) for h in a], [math.log(_value(h)) for h in b])
    elif len(a) == 1 and len(b) == 1:
        p = single_run_p(a[0], b[0])
    else:
        return "no test: one run on one side and several on the other", None
    if p is None:
        return "no test: fewer than two valid trials in a run", None
    return ("B higher" if _side_value(b) > _side_value(a) else "B lower"), p


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _side_value(side: Sequence[Headline | None]) -> float | None:
    """The geometric mean of a figure over a side's runs."""
    values = [_value(h) for h in side]
    if not values or any(v is None or v <= 0 for v in values):
        return values[0] if len(values) == 1 else None
    return math.exp(sum(math.log(v) for v in values) / len(values))


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


def compare(a: RunSummary | Sequence[RunSummary], b: RunSummary | Sequence[RunSummary]) -> Comparison:
    """A row per headline figure of any run (A's order, then figures only B has); ``a`` and
    ``b`` are one run or several runs of each side."""
    side_a = [a] if isinstance(a, RunSummary) else list(a)
    side_b = [b] if isinstance(b, RunSummary) else list(b)
    heads_a = [{h.label: h for h in s.headlines} for s in side_a]
    heads_b = [{h.label: h for h in s.headlines} for s in side_b]
    found = []
    for label in dict.fromkeys([k for heads in (*heads_a, *heads_b) for k in heads]):
        ha, hb = [h.get(label) for h in heads_a], [h.get(label) for h in heads_b]
        va, vb = _side_value(ha), _side_value(hb)
        change = vb / va if va and vb is not None else None
        text, p = verdict(ha, hb)
        found.append((label, ha[0], hb[0], change, text, p))
    tested = [p for *_, p in found if p is not None]
    adjusted = iter(holm(tested))
    rows = []
    for label, ha, hb, change, text, p in found:
        q = None if p is None else next(adjusted)
        if q is not None and q >= ALPHA:
            text = NO_CLEAR_CHANGE
        rows.append(Row(label, ha, hb, change, q, text, p))
    method = (f"Welch's t test over {len(side_a)} and {len(side_b)} runs' log values"
              if len(side_a) > 1 and len(side_b) > 1 else
              f"a normal test of the two runs' log values with each run's own standard error "
              f"and a run-to-run allowance of {RUN_TO_RUN_SD:.0%} per run")
    warnings = [w for x in side_a for y in side_b for w in mismatches(x, y)]
    return Comparison(", ".join(s.run_id for s in side_a), ", ".join(s.run_id for s in side_b),
                      rows, list(dict.fromkeys(warnings)),
                      f"{method}; p adjusted by Holm's method over the {len(tested)} figures tested")


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
    lines += [f"A = run {comparison.run_a}", f"B = run {comparison.run_b}",
              f"verdicts: {comparison.method}"]
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
    out.append(f"Verdicts: {comparison.method}; \"{NO_CLEAR_CHANGE}\" when the adjusted p >= "
               f"{ALPHA}. Intervals are each side's first run's own 95% CIs (summary schema {SCHEMA}).")
    out.append("")
    out.append(to_markdown([Table(COLUMNS, table_rows(comparison), "lrrrrrl")]))
    return "\n".join(out)
