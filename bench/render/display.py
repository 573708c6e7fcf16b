"""How figures are written for people: the one formatting module (report, console, compare).

Every figure goes through here, so a value, its interval and its verdict read the same in
the terminal, report.md, report.html and ``seambench compare``. An unsupported estimate (too
few samples for its percentile) is never printed as a number.
"""
from __future__ import annotations

from typing import Any

from bench.results.model import NOT_SIGNIFICANT, Estimate, Headline, Ratio

UNITS = {"latency": "µs", "cpu": "ms", "ratio": "x", "text": ""}
TOO_FEW = "too few samples"


def number(value: Any, digits: int = 0) -> str:
    """12,345 / 1.23 / "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.{digits}f}"


def estimate(e: Estimate | None, digits: int = 0, unit: str = "") -> str:
    """"1,234 (1,100–1,400)" with the unit after; "n/a"; or why it is not shown."""
    if e is None or e.value is None:
        return "n/a"
    if not e.supported:
        return f"{TOO_FEW} ({number(e.samples)})"
    suffix = f" {unit}" if unit and unit != "x" else unit
    ci = f" ({number(e.low, digits)}–{number(e.high, digits)})" if e.ci95 else ""
    return f"{number(e.value, digits)}{suffix}{ci}"


def ratio(r: Ratio | Estimate | None, suffix: str = "") -> str:
    """"2.13x (1.89–2.57)", with ``suffix`` after the x ("2.13x monolith (…)"), or "n/a"."""
    if r is None or r.value is None:
        return "n/a"
    if not r.supported:
        return f"{r.value:.2f}x{suffix} ({TOO_FEW})"
    ci = f" ({r.low:.2f}–{r.high:.2f})" if r.ci95 else " (no interval)"
    return f"{r.value:.2f}x{suffix}{ci}"


def ratio_verdict(r: Ratio | None) -> str:
    """"significant" / "not significant" / why there is no verdict."""
    if r is None or r.value is None:
        return r.note if r is not None and r.note else "not measured"
    if not r.supported:
        return TOO_FEW
    if r.ci95 is None:
        return r.note or "no interval"
    return "significant" if r.significant else NOT_SIGNIFICANT


def percent(fraction: Any, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if fraction is None else f"{float(fraction) * 100:.{digits}f}%{suffix}"


def headline_cells(h: Headline) -> tuple[str, str, str]:
    """(value, 95% interval, verdict) of a headline row."""
    if h.kind == "ratio" and h.ratio is not None:
        r = h.ratio
        if r.value is None:
            return "n/a", "", h.verdict or ratio_verdict(r)
        ci = f"{r.low:.2f}x .. {r.high:.2f}x" if r.ci95 else ""
        value = f"{r.value:.2f}x" if r.supported else f"{r.value:.2f}x?"
        return value, ci, h.verdict or ratio_verdict(r)
    if h.estimate is not None:
        e, unit = h.estimate, UNITS.get(h.kind, "")
        digits = 3 if h.kind == "cpu" else 0
        if e.value is None or not e.supported:
            return ("n/a" if e.value is None else TOO_FEW), "", h.verdict
        ci = f"{number(e.low, digits)} .. {number(e.high, digits)}" if e.ci95 else ""
        return f"{number(e.value, digits)} {unit}".strip(), ci, h.verdict
    return h.text, "", h.verdict
