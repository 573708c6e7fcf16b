"""Two runs side by side: the headline figures of summary A and summary B, the change B/A,
and whether the 95% intervals overlap.

Everything but ``load_summary`` is a pure function of two summary dicts (schema
``seambench.summary/1``, see bench/analysis.py). Overlapping intervals are reported as "no
clear change" — a conservative reading: disjoint 95% intervals do mean a difference, while
overlapping ones may still hide a small one. Runs that measured different things
(placements, profile, trials, rates) are still compared where they overlap, with a warning.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis import SCHEMA, summarize
from bench.document import Table, md_escape, to_markdown
from bench.store import SUMMARY, read_json

NO_CLEAR_CHANGE = "no clear change"


@dataclass(frozen=True)
class Quantity:
    """One figure of one run. ``unit``: "us" (µs), "ms" (CPU-ms per request), "MiB", "x"
    (a ratio), "req/s" or "" ; ``ci95`` is None when the summary has no interval for it."""

    label: str
    value: float | None
    ci95: tuple[float, float] | None
    unit: str


@dataclass(frozen=True)
class Row:
    label: str
    a: Quantity | None
    b: Quantity | None
    change: float | None  # b.value / a.value
    verdict: str


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    rows: list[Row]
    warnings: list[str]


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """The run's summary.json, or (when it has none, or an unreadable one) the summary
    computed from its raw files in memory, writing nothing. Raises FileNotFoundError when ``run_dir`` is not a run."""
    path = Path(run_dir) / SUMMARY
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError):  # none yet, or a torn/foreign file: recompute
        return summarize(run_dir)


def _quantity(label: str, doc: Any, unit: str) -> Quantity | None:
    """A Quantity from an estimate dict ``{"value", "ci95"}`` or a bare number."""
    if doc is None:
        return None
    if isinstance(doc, Mapping):
        ci = doc.get("ci95")
        return Quantity(label, doc.get("value"), tuple(ci) if ci else None, unit)
    return Quantity(label, float(doc), None, unit)


def headline_figures(summary: Mapping[str, Any]) -> dict[str, Quantity]:
    """The figures worth comparing across runs, keyed by label (which names placement and
    rate, so the same label means the same thing in both runs): journey ratios, one call's
    cost, the floors, each placement's journey percentiles, CPU, RSS and notification lag
    per rate, and throughput at the p99 objective."""
    found: list[Quantity | None] = []
    labels = {"p50_us": "p50", "p99_us": "p99", "p999_us": "p99.9"}
    for pair, per_rate in summary.get("ratios", {}).items():
        for rate, at in per_rate.items():
            for key, name in (("p50_us", "journey p50"), ("p99_us", "journey p99"),
                              ("cpu_ms_per_request", "CPU per request")):
                found.append(_quantity(f"{name} {pair} @ {rate} req/s", at.get(key), "x"))
    for placement, hop in summary.get("hops", {}).items():
        found.append(_quantity(f"one call, {placement} (p50 slope over k)", hop.get("per_call_us"), "us"))
        for key in (k for k in hop if k.startswith("per_call_vs_")):
            floor = key.removeprefix("per_call_vs_").removesuffix("_floor")
            found.append(_quantity(f"one call / {floor} floor p50, {placement}", hop[key], "x"))
        found.append(_quantity(f"hop chain CPU per request, {placement}", hop.get("cpu_ms_per_request"), "ms"))
    for kind, floor in summary.get("floors", {}).items():
        found.append(_quantity(f"{kind} floor p50", floor.get("p50_us"), "us"))
    for placement, rungs in summary.get("journey", {}).items():
        for rate, rung in rungs.items():
            where = f"{placement} @ {rate} req/s"
            for key, name in labels.items():
                found.append(_quantity(f"journey {name}, {where}", rung.get(key), "us"))
            found.append(_quantity(f"journey CPU per request, {where}", rung.get("cpu_ms_per_request"), "ms"))
            found.append(_quantity(f"journey peak RSS, {where}", rung.get("rss_mib"), "MiB"))
            lag = rung.get("notification_lag_us") or {}
            found.append(_quantity(f"notification lag p99, {where}", lag.get("p99_us"), "us"))
    for placement, t in summary.get("throughput_at_objective", {}).items():
        found.append(_quantity(f"throughput at p99 <= {t.get('objective_p99_ms', 0):g} ms, {placement}",
                               t.get("highest_passing_rate"), "req/s"))
    return {q.label: q for q in found if q is not None}


def verdict(a: Quantity | None, b: Quantity | None) -> str:
    """"no clear change" when the 95% intervals overlap (or, without intervals, when the
    values are equal); else which way B moved."""
    if a is None:
        return "only in B"
    if b is None:
        return "only in A"
    if a.value is None or b.value is None:
        return "not measured in both"
    if a.ci95 and b.ci95:
        if a.ci95[0] <= b.ci95[1] and b.ci95[0] <= a.ci95[1]:
            return NO_CLEAR_CHANGE
        return "B higher (CIs apart)" if b.value > a.value else "B lower (CIs apart)"
    if a.value == b.value:
        return NO_CLEAR_CHANGE
    return "B higher (no CI)" if b.value > a.value else "B lower (no CI)"


def mismatches(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """One line per way the two runs measured different things (or could not be trusted)."""
    out = []
    for name, s in (("A", a), ("B", b)):
        if s.get("schema") != SCHEMA:
            out.append(f"run {name} has summary schema {s.get('schema')!r}, not {SCHEMA!r}")
        if not s.get("complete"):
            out.append(f"run {name} ({s.get('run_id')}) is INCOMPLETE")
    for key, what in (("placements", "placements"), ("baseline", "baseline"),
                      ("profile", "profile"), ("trials", "trials per step")):
        if a.get(key) != b.get(key):
            out.append(f"{what} differ: A has {_describe(a.get(key))}; B has {_describe(b.get(key))}")
    rates_a, rates_b = _rates(a), _rates(b)
    if rates_a != rates_b:
        out.append(f"journey rates differ: A {_describe(sorted(rates_a, key=float))} req/s, "
                   f"B {_describe(sorted(rates_b, key=float))} req/s")
    return out


def _rates(summary: Mapping[str, Any]) -> set[str]:
    return {r for rungs in summary.get("journey", {}).values() for r in rungs}


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> Comparison:
    """Row per headline figure of either run (A's order, then figures only B has)."""
    figures_a, figures_b = headline_figures(a), headline_figures(b)
    rows = []
    for label in dict.fromkeys([*figures_a, *figures_b]):
        qa, qb = figures_a.get(label), figures_b.get(label)
        if all(q is None or q.value is None for q in (qa, qb)):
            continue  # measured in neither run (e.g. a monolith's call, which costs nothing)
        change = None
        if qa and qb and qa.value and qb.value is not None:
            change = qb.value / qa.value
        rows.append(Row(label, qa, qb, change, verdict(qa, qb)))
    return Comparison(str(a.get("run_id")), str(b.get("run_id")), rows, mismatches(a, b))


def format_value(q: Quantity | None) -> str:
    if q is None or q.value is None:
        return "n/a"
    v = float(q.value)
    if q.unit == "x":
        return f"{v:.2f}x"
    if q.unit == "us":
        return f"{v:,.0f} µs"
    if q.unit == "ms":
        return f"{v:.3f} ms"
    if q.unit == "MiB":
        return f"{v:,.1f} MiB"
    return f"{v:g} {q.unit}".strip()


def format_ci(q: Quantity | None) -> str:
    if q is None or not q.ci95:
        return ""
    lo, hi = (format_value(Quantity(q.label, v, None, q.unit)) for v in q.ci95)
    return f"{lo} .. {hi}"


def table_rows(comparison: Comparison) -> list[list[str]]:
    return [[row.label, format_value(row.a), format_ci(row.a), format_value(row.b), format_ci(row.b),
             "" if row.change is None else f"{row.change:.2f}x", row.verdict]
            for row in comparison.rows]


COLUMNS = ["figure", "A", "A 95% CI", "B", "B 95% CI", "B/A", "verdict"]


def render_text(comparison: Comparison) -> str:
    """A fixed-width table for the terminal, warnings (prefixed "warning:") first."""
    lines = [f"warning: {w}" for w in comparison.warnings]
    lines += [f"A = run {comparison.run_a}", f"B = run {comparison.run_b}"]
    rows = [COLUMNS, *table_rows(comparison)]
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
    out.append("Intervals are 95% bootstrap CIs; overlapping intervals read as \"no clear change\".")
    out.append("")
    out.append(to_markdown([Table(COLUMNS, table_rows(comparison), "lrrrrrl")]))
    return "\n".join(out)
