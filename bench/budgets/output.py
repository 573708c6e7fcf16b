"""What ``seambench check`` writes: a table for the terminal, Markdown (for
$GITHUB_STEP_SUMMARY) and JUnit XML.

The JUnit XML follows the schema Jenkins' xUnit plugin publishes (junit-10.xsd), which
GitHub, GitLab and most CI test reporters read: ``<testsuites>`` holding one
``<testsuite name tests failures errors skipped time timestamp hostname>``, one
``<testcase name classname time>`` per budget, a ``<failure type message>`` for a breach, a
``<skipped message>`` for noisy and missing verdicts, and ``<error type message>`` (in a
single testcase) when the input was unusable. Numbers are the figures as printed.
"""
from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET

from bench.budgets import verdicts as v
from bench.budgets.evaluate import Check, Result
from bench.render.document import Bullets, Heading, Paragraph, Table, to_markdown

COLUMNS = ["budget", "measured (95% CI)", "limit", "verdict"]
SUITE = "seambench check"


def _verdict_cell(r: Result) -> str:
    text = r.message
    return "BREACH" + text[len(v.BREACH):] if r.verdict == v.BREACH else text


def rows(check: Check) -> list[list[str]]:
    return [[r.budget.figure, r.measured, r.limit, _verdict_cell(r)] for r in check.results]


def render_text(check: Check, exit_code: int) -> str:
    """Warnings, the fixed-width table, and a totals line with the exit code."""
    lines = [f"warning: {w}" for w in check.warnings]
    lines.append(f"seambench check: run {check.run_id}"
                 + (f" against baseline {check.baseline_id}" if check.baseline_id else "")
                 + f", budgets {check.budgets_path}")
    table = [COLUMNS, *rows(check)]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS) - 1)]
    for index, row in enumerate(table):
        lines.append("  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(COLUMNS[-1]))
    lines.append(f"{len(check.results)} budgets: {check.totals()} (exit {exit_code})")
    return "\n".join(lines) + "\n"


def render_markdown(check: Check, exit_code: int) -> str:
    """A section for a CI job summary: heading, totals, warnings, the table."""
    outcome = {1: "breach", 3: "undecided (noisy or missing, --strict)"}.get(exit_code,
                                                                          "no breach")
    blocks = [Heading(f"seambench check: {outcome} ({check.totals()})", 2),
              Paragraph(f"Run {check.run_id}" + (f" against baseline {check.baseline_id}"
                                                 if check.baseline_id else "")
                        + f"; budgets {check.budgets_path}. A ceiling is breached only when the "
                        "whole 95% interval is over it; a growth limit only when the change is "
                        "over it and significant; noisy and missing verdicts fail the check "
                        f"only with --strict (exit {exit_code}).")]
    if check.warnings:
        blocks.append(Bullets([f"warning: {w}" for w in check.warnings]))
    blocks.append(Table(COLUMNS, rows(check), "lrll"))
    return to_markdown(blocks)


def _suite(tests: int, failures: int, errors: int, skipped: int) -> ET.Element:
    return ET.Element("testsuite", {
        "name": SUITE, "tests": str(tests), "failures": str(failures), "errors": str(errors),
        "skipped": str(skipped), "time": "0", "hostname": socket.gethostname() or "localhost",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())})


def _document(suite: ET.Element) -> str:
    root = ET.Element("testsuites", {k: suite.get(k) for k in ("name", "tests", "failures",
                                                               "errors", "time")})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def junit_xml(check: Check, strict: bool = False) -> str:
    """One testcase per budget: <failure> for a breach, <skipped> for noisy or missing
    (``strict``: a <failure> of that type too, since the gate fails on it)."""
    undecided = check.count(v.NOISY) + check.count(v.MISSING)
    suite = _suite(len(check.results), check.count(v.BREACH) + (undecided if strict else 0), 0,
                   0 if strict else undecided)
    for r in check.results:
        b = r.budget
        case = ET.SubElement(suite, "testcase", {
            "name": b.label, "classname": f"seambench.{b.experiment}.{b.placement}", "time": "0"})
        detail = f"measured {r.measured}; limit {r.limit}; {r.message}"
        if r.verdict == v.BREACH or (strict and r.verdict in (v.NOISY, v.MISSING)):
            ET.SubElement(case, "failure", {"type": r.verdict, "message": detail}).text = detail
        elif r.verdict in (v.NOISY, v.MISSING):
            ET.SubElement(case, "skipped", {"type": r.verdict, "message": detail})
        ET.SubElement(case, "system-out").text = detail
    return _document(suite)


def junit_error_xml(message: str) -> str:
    """Unusable input: one testcase with an <error> saying why (exit code 2)."""
    suite = _suite(1, 0, 1, 0)
    case = ET.SubElement(suite, "testcase", {"name": "budgets could be checked",
                                             "classname": "seambench.check", "time": "0"})
    ET.SubElement(case, "error", {"type": "unusable input", "message": message}).text = message
    return _document(suite)
