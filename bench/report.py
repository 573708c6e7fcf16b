"""The report of a run: summary.json, report.md and a self-contained report.html."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from bench.analysis import summarize
from bench.store import SUMMARY, write_json_atomic, write_text_atomic


def build_report(run_dir: str | Path) -> dict[str, Any]:
    """(Re)build summary.json and the report from the run's raw files; returns the summary."""
    run_dir = Path(run_dir)
    summary = summarize(run_dir)
    write_json_atomic(run_dir / SUMMARY, summary)
    markdown = render_markdown(summary)
    write_text_atomic(run_dir / "report.md", markdown)
    write_text_atomic(run_dir / "report.html",
                      f"<!doctype html><meta charset=utf-8><title>seambench {summary['run_id']}</title>"
                      f"<pre>{html.escape(markdown)}</pre>\n")
    return summary


def render_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# seambench run {summary['run_id']}", ""]
    for row in summary["headlines"]:
        ci = row.get("ci95")
        lines.append(f"- {row['label']}: {row['value']} {row.get('unit', '')}"
                     + (f" (95% CI {ci[0]} .. {ci[1]})" if ci else ""))
    for warning in summary["warnings"]:
        lines.append(f"- warning: {warning}")
    return "\n".join(lines) + "\n"
