"""The report of a run: summary.json, figures/*.png, report.md and a self-contained report.html.

``build_report`` reads only the run's files (through ``bench.results.reader``), so it can be re-run on
any results directory, complete or not, of this schema or the one before. The common
sections (the run, the headlines, what was invalid, warnings) are here; each experiment
writes its own sections (``Experiment.report``). Latencies are µs unless a header says ms.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.experiments import get
from bench.render import display
from bench.render.document import (Block, Bullets, Figure, Heading, Paragraph, Table, to_html,
                                   to_markdown)
from bench.results.model import RunSummary
from bench.results.reader import load_run
from bench.results.store import SUMMARY, assemble_parts, write_json_atomic, write_text_atomic
from bench.results.summary import summarize

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES = "figures"

HOW_TO_READ = (
    "Every latency is measured from the request's intended send time on an open-loop arrival "
    "schedule, so a slow response delays no later request's clock and queueing shows up in the "
    "tail (no coordinated omission); requests dropped or unfinished at the end of a step enter "
    "the tail at their lower bound. Latencies are recorded in µs into HdrHistograms; a "
    "percentile is read from histograms added together (over seconds and valid trials), never "
    "averaged, and printed only when at least 10/(1-q) samples support it. A placement's "
    "interval is a two-level bootstrap (trials, then seconds within them). A ratio between "
    "placements is paired: each trial ran both back to back with the same seed, and only "
    "trials measured in both count; its 95% interval is Student-t over those trials (of one "
    "log ratio per trial, or a delete-one-trial jackknife of the ratio of figures pooled "
    "over them: each experiment's section says which). A ratio whose "
    "interval includes 1.0 is marked not significant; a target is met only when the whole "
    "interval is under it. Invalid steps never enter a figure; they are listed below. Read "
    "the ratios before the absolute numbers, which depend on this machine.")


def build_report(run_dir: str | Path) -> RunSummary:
    """(Re)build summary.json, figures/*.png, report.md and report.html from the run's raw
    files, each written atomically; returns the summary. Raises FileNotFoundError when
    ``run_dir`` has no manifest.json (not a run)."""
    run_dir = Path(run_dir)
    assemble_parts(run_dir)  # a run killed before it could put its tables together
    run = load_run(run_dir)
    summary = summarize(run)
    write_json_atomic(run_dir / SUMMARY, summary.to_json())
    fig_dir = run_dir / FIGURES
    if fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):
            old.unlink()
    blocks: list[Block] = [Heading(title_of(summary), 1)]
    if summary.complete:
        blocks.append(Paragraph("Status: complete.", strong=True))
    else:
        reason = run.manifest.get("incomplete_reason", "stopped early")
        blocks.append(Paragraph(f"Status: INCOMPLETE ({reason}). The figures cover only the steps "
                                "that finished.", strong=True))
    blocks += run_section(summary, run.manifest)
    blocks += [Heading("How to read this"), Paragraph(HOW_TO_READ)]
    blocks += headline_section(summary)
    for name, result in summary.experiments.items():
        blocks += get(name).report(run, result, fig_dir)
    blocks += [Heading("Invalid steps"), Bullets(summary.invalid_steps or ["none"])]
    blocks += [Heading("Warnings"), Bullets(summary.warnings or ["none"])]
    blocks = [_relative(b, run_dir) for b in blocks]
    write_text_atomic(run_dir / REPORT_MD, to_markdown(blocks))
    write_text_atomic(run_dir / REPORT_HTML, to_html(blocks, title_of(summary), run_dir))
    return summary


def _relative(block: Block, run_dir: Path) -> Block:
    if isinstance(block, Figure) and Path(block.path).is_absolute():
        return replace(block, path=Path(block.path).resolve().relative_to(run_dir.resolve()).as_posix())
    return block


def title_of(summary: RunSummary) -> str:
    return f"seambench run {summary.run_id}: {' vs '.join(summary.placements) or 'no placements'}"


def _utc(epoch_s: Any) -> str:
    if not isinstance(epoch_s, (int, float)):
        return "n/a"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch_s))


def _settings_text(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in settings.items())


def run_section(summary: RunSummary, manifest: Mapping[str, Any]) -> list[Block]:
    config = manifest.get("config", {})
    profile = config.get("profile", {})
    env = manifest.get("environment", {})
    launch = config.get("launch", {})
    started, ended = manifest.get("started_at"), manifest.get("ended_at")
    duration = f" ({ended - started:,.0f} s)" if isinstance(started, (int, float)) \
        and isinstance(ended, (int, float)) else ""
    packages = ", ".join(f"{name} {version}" for name, version in env.get("packages", {}).items())
    rows = [
        ("run id", str(summary.run_id or manifest.get("run_id") or "?")),
        ("status", "complete" if summary.complete else
         f"INCOMPLETE ({manifest.get('incomplete_reason', 'stopped early')})"),
        ("started / ended", f"{_utc(started)} / {_utc(ended)}{duration}"),
        ("placements (baseline first)", ", ".join(summary.placements) or "none"),
        *_source_rows(config.get("sources", {})),
        ("profile", str(summary.profile or profile.get("name") or "?")),
        ("trials per step", f"{display.number(summary.trials)} (the profile's; an experiment "
                            "may make more of its own)"),
        ("seed", display.number(config.get("seed"))),
        ("arrival process", str(config.get("arrival", "?"))),
        ("experiments", ", ".join(f"{name} ({_settings_text(s)})" for name, s in
                                  config.get("experiments", {}).items()) or ", ".join(summary.experiments)),
        ("bootstrap resamples", display.number(profile.get("bootstrap_resamples"))),
        ("gunicorn workers x threads", f"{display.number(launch.get('workers'))} x {display.number(launch.get('threads'))}"),
        ("at the edge", _edge_text(launch.get("edge"), env.get("nginx"))),
        ("CPU pinning", str(summary.cpu_note or manifest.get("cpu_note") or "not recorded")),
        ("git revision", str(env.get("git_revision", "unknown"))),
        ("CPU model", str(env.get("cpu_model", "unknown"))),
        ("cores", display.number(env.get("cpu_count"))),
        ("kernel", str(env.get("kernel", "unknown"))),
        ("Python", str(env.get("python", "unknown"))),
        ("packages", packages or "not recorded"),
    ]
    return [Heading("Run"), Table(["field", "value"], rows, "ll")]


def _edge_text(edge: Any, nginx_version: Any) -> str:
    """What fronted the public process of every placement (bench/system/edge.py)."""
    if edge == "nginx":
        return (f"nginx {nginx_version or ''}".rstrip() + ", a buffering reverse proxy in front "
                "of the public process of every placement alike (one more loopback round trip "
                "per request)")
    if edge == "none":
        return "nothing: gunicorn faced the load generator directly"
    return "not recorded"


def _source_rows(sources: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One row per git ref other placements ran (``run --baseline-ref``): which placements,
    which commit, how its dependencies were served."""
    by_commit: dict[str, list[str]] = {}
    for name, source in sources.items():
        by_commit.setdefault(str(source.get("commit")), []).append(name)
    rows = []
    for names in by_commit.values():
        s = sources[names[0]]
        rows.append((f"code of {', '.join(names)}",
                     f"git ref {s.get('ref')} = {str(s.get('commit', '?'))[:12]} "
                     f"\"{s.get('subject', '')}\" (dependencies: {s.get('environment', '?')}); "
                     f"the other placements run this checkout"))
    return rows


def headline_section(summary: RunSummary) -> list[Block]:
    rows = [(h.label, *display.headline_cells(h)) for h in summary.headlines]
    if not rows:
        return [Heading("Headlines"), Paragraph("No headline figures: nothing comparable was measured.")]
    return [Heading("Headlines"), Paragraph(
        "Ratios are each placement over the baseline (the first), paired by trial; each "
        "experiment's section says at which load its headline figures are taken."),
        Table(["figure", "value", "95% CI", "verdict"], rows, "lrrl")]
