"""The report of a run: summary.json, figures/*.png, report.md and a self-contained report.html.

``build_report`` reads only the run's files (via ``bench.analysis``), so it can be re-run on
any results directory, complete or not. Every section copes with missing pieces: an
interrupted run may lack the journey, a placement or the floors, and its report says so
instead of failing. Latencies in the summary are µs; tables print µs unless a header says ms.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from bench import hdr, plots
from bench.analysis import CHAIN, load, summarize
from bench.recorder import tag_of
from bench.document import Block, Bullets, Figure, Heading, Paragraph, Table, to_html, to_markdown
from bench.store import assemble_parts, HISTOGRAMS, SUMMARY, write_json_atomic, write_text_atomic

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES = "figures"
LAG_TAG = "notification_lag"
FLOOR_LABELS = {"tcp": "raw TCP round trip", "http": "raw keep-alive HTTP round trip",
                "http_nested": "HTTP round trip made from inside a gunicorn worker",
                "hop": "bare hop from a worker (added p50)"}
LATENCY_KEYS = (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))

HOW_TO_READ = (
    "Every latency is measured from the request's intended send time on an open-loop arrival "
    "schedule, so a slow response delays no later request's clock and queueing shows up in the "
    "tail (no coordinated omission). Latencies are recorded in µs into HdrHistograms; a "
    "percentile is always read from histograms added together (over seconds and trials), never "
    "averaged. Each figure's 95% confidence interval is a stratified block bootstrap: seconds "
    "resampled within each trial; a ratio's interval comes from resampling numerator and "
    "denominator independently. A ratio whose interval includes 1.0 is marked not significant. "
    "With few trials or few requests intervals are wide and p99.9 may equal the maximum; read "
    "the ratios before the absolute numbers, which depend on this machine.")


def build_report(run_dir: str | Path) -> dict[str, Any]:
    """(Re)build summary.json, figures/*.png, report.md and report.html from the run's raw
    files, each written atomically; returns the summary. Raises FileNotFoundError when
    ``run_dir`` has no manifest.json (not a run)."""
    run_dir = Path(run_dir)
    summary = summarize(run_dir)
    assemble_parts(run_dir)  # a run killed before it could put its tables together
    write_json_atomic(run_dir / SUMMARY, summary)
    data = load(run_dir)
    figures = draw_figures(run_dir, summary)
    blocks = report_blocks(summary, data.manifest, data.steps, figures)
    write_text_atomic(run_dir / REPORT_MD, to_markdown(blocks))
    write_text_atomic(run_dir / REPORT_HTML, to_html(blocks, title_of(summary), run_dir))
    return summary


def title_of(summary: Mapping[str, Any]) -> str:
    comparison = summary.get("comparison") or "no placements"
    return f"seambench run {summary.get('run_id') or '?'}: {comparison}"


# -- figures ------------------------------------------------------------------------------

def step_histograms(run_dir: Path) -> dict[tuple[str, str, str, str], HdrHistogram]:
    """histograms.hlog's step totals merged over trials: (experiment, placement, rate as in
    the summary's keys, request-name tag) -> µs histogram. Empty without the file."""
    path = run_dir / HISTOGRAMS
    if not path.is_file():
        return {}
    parts: dict[tuple[str, str, str, str], list[HdrHistogram]] = defaultdict(list)
    for interval in hdr.read_interval_log(path):
        fields = interval.tag.split("/")
        if len(fields) != 5 or not fields[2].startswith("r"):
            continue
        experiment, placement, rate, _trial, name = fields
        parts[(experiment, placement, f"{float(rate[1:]):g}", name)].append(interval.histogram)
    return {key: hdr.merge(histograms) for key, histograms in parts.items()}


def draw_figures(run_dir: Path, summary: Mapping[str, Any]) -> dict[str, str]:
    """Draw every figure the summary has data for into run_dir/figures/; returns figure id
    -> path relative to ``run_dir``. Figures of a previous build are removed first."""
    fig_dir = run_dir / FIGURES
    if fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):
            old.unlink()
    drawn: dict[str, Path | None] = {}
    hops, journey = summary.get("hops", {}), summary.get("journey", {})
    histograms = step_histograms(run_dir)
    placements = list(summary.get("placements", []))

    drawn["hop_cost"] = plots.hop_cost(hops, summary.get("floors", {}), fig_dir / "hop-cost.png")
    hop_ks = sorted({k for h in hops.values() for k in h.get("per_k", {})}, key=int)
    for k in hop_ks:
        chain = tag_of(f"chain k={k}")
        per_placement = {p: h for p in placements if p in hops
                         and (h := merged(histograms, "hops", p, None, lambda n, chain=chain: n == chain))}
        drawn[f"spectrum_hops_k{k}"] = plots.percentile_spectrum(
            per_placement, f"hop chain k={k}: latency by percentile (all trials)",
            fig_dir / f"spectrum-hops-k{k}.png")

    drawn["latency_vs_rate"] = plots.latency_vs_rate(
        journey, fig_dir / "journey-latency-vs-rate.png", _objective_ms(summary))
    for rate in _rates(journey):
        per_placement = {p: h for p in placements if rate in journey.get(p, {})
                         and (h := merged(histograms, "journey", p, rate, lambda n: n != LAG_TAG))}
        drawn[f"spectrum_journey_{rate}"] = plots.percentile_spectrum(
            per_placement, f"journey at {rate} req/s: latency by percentile (all requests, all trials)",
            fig_dir / f"spectrum-journey-r{rate}.png")

    rate = summary.get("headline_rate") or next(iter(_rates(journey)), None)
    if rate is not None:
        at = {p: journey[p][rate] for p in placements if rate in journey.get(p, {})}
        drawn["resources"] = plots.resources(
            {p: e.get("cpu_ms_per_request") for p, e in at.items()},
            {p: e.get("rss_mib") for p, e in at.items()},
            f"journey at {rate} req/s: CPU and memory of the system under test",
            fig_dir / "resources.png")
        drawn["notification_lag"] = plots.notification_lag(
            {p: e.get("notification_lag_us") for p, e in at.items()},
            f"notification lag at {rate} req/s (all trials)", fig_dir / "notification-lag.png")
    elif hops:
        drawn["resources"] = plots.resources(
            {p: h.get("cpu_ms_per_request") for p, h in hops.items()}, {},
            "hop chain: CPU of the system under test", fig_dir / "resources.png")
    return {name: path.relative_to(run_dir).as_posix() for name, path in drawn.items() if path}


def merged(histograms: Mapping[tuple[str, str, str, str], HdrHistogram], experiment: str,
           placement: str, rate: str | None, keep: Callable[[str], bool]) -> HdrHistogram | None:
    """The sum of ``step_histograms`` entries of one experiment and placement (at ``rate``,
    or every rate for None) whose name tag passes ``keep``; None when there are none."""
    parts = [h for (e, p, r, n), h in histograms.items()
             if e == experiment and p == placement and rate in (None, r) and keep(n)]
    return hdr.merge(parts) if parts else None


def _rates(journey: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return sorted({r for rungs in journey.values() for r in rungs}, key=float)


def _objective_ms(summary: Mapping[str, Any]) -> float | None:
    for t in summary.get("throughput_at_objective", {}).values():
        return t.get("objective_p99_ms")
    return None


# -- formatting ---------------------------------------------------------------------------

def num(value: Any, digits: int = 0) -> str:
    """A number with thousands separators; "n/a" for None/NaN; strings pass through."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    value = float(value)
    if value != value:
        return "n/a"
    return f"{value:,.{digits}f}"


def with_ci(estimate: Mapping[str, Any] | None, digits: int = 0, unit: str = "") -> str:
    """``{"value", "ci95"}`` as "value (lo .. hi)"; "n/a" without a value."""
    if not estimate or estimate.get("value") is None:
        return "n/a"
    text = num(estimate["value"], digits) + unit
    ci = estimate.get("ci95")
    return text + (f" ({num(ci[0], digits)} .. {num(ci[1], digits)})" if ci else " (no CI)")


def headline_value(row: Mapping[str, Any]) -> str:
    value, unit = row.get("value"), row.get("unit", "")
    if isinstance(value, str) or value is None:
        return num(value)
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "us":
        return f"{num(value, 1)} µs"
    return f"{num(value, 2)} {unit}".strip()


def headline_ci(row: Mapping[str, Any]) -> str:
    ci = row.get("ci95")
    if not ci:
        return ""
    if row.get("unit") == "x":
        return f"{ci[0]:.2f}x .. {ci[1]:.2f}x"
    return f"{num(ci[0], 1)} .. {num(ci[1], 1)}"


def headline_note(row: Mapping[str, Any]) -> str:
    if row.get("ratio") and row.get("significant") is False:
        return "not significant (the 95% CI includes 1.0)"
    return row.get("note", "")


def _utc(epoch_s: Any) -> str:
    if not isinstance(epoch_s, (int, float)):
        return "n/a"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch_s))


# -- sections -----------------------------------------------------------------------------

def report_blocks(summary: Mapping[str, Any], manifest: Mapping[str, Any], steps: pd.DataFrame,
                  figures: Mapping[str, str]) -> list[Block]:
    """The whole report as document blocks (see bench.document)."""
    blocks: list[Block] = [Heading(title_of(summary), 1)]
    if summary.get("complete"):
        blocks.append(Paragraph("Status: complete.", strong=True))
    else:
        reason = manifest.get("incomplete_reason", "stopped early")
        blocks.append(Paragraph(f"Status: INCOMPLETE ({reason}). The figures cover only the steps "
                                "that finished.", strong=True))
    blocks += run_section(summary, manifest)
    blocks += [Heading("How to read this"), Paragraph(HOW_TO_READ)]
    blocks += headline_section(summary)
    blocks += hop_section(summary, figures)
    blocks += journey_section(summary, steps, figures)
    blocks += ratio_section(summary)
    blocks += throughput_section(summary)
    blocks += [Heading("Warnings"), Bullets(list(summary.get("warnings", [])) or ["none"])]
    return blocks


def run_section(summary: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[Block]:
    config = manifest.get("config", {})
    profile = config.get("profile", {})
    env = manifest.get("environment", {})
    launch = config.get("launch", {})
    started, ended = manifest.get("started_at"), manifest.get("ended_at")
    duration = f" ({ended - started:,.0f} s)" if isinstance(started, (int, float)) \
        and isinstance(ended, (int, float)) else ""
    packages = ", ".join(f"{name} {version}" for name, version in env.get("packages", {}).items())
    rows = [
        ("run id", str(summary.get("run_id") or manifest.get("run_id") or "?")),
        ("status", "complete" if summary.get("complete") else
         f"INCOMPLETE ({manifest.get('incomplete_reason', 'stopped early')})"),
        ("started / ended", f"{_utc(started)} / {_utc(ended)}{duration}"),
        ("placements (baseline first)", ", ".join(summary.get("placements", [])) or "none"),
        ("profile", str(summary.get("profile") or profile.get("name") or "?")),
        ("trials per step", num(summary.get("trials"))),
        ("seed", num(config.get("seed"))),
        ("arrival process", str(config.get("arrival", "?"))),
        ("journey rates (req/s)", ", ".join(f"{r:g}" for r in profile.get("journey_rates", [])) or "n/a"),
        ("p99 objective", f"{num(config.get('p99_objective_ms'), 1)} ms"),
        ("bootstrap resamples", num(summary.get("bootstrap_resamples"))),
        ("gunicorn workers x threads", f"{num(launch.get('workers'))} x {num(launch.get('threads'))}"),
        ("CPU pinning", str(summary.get("cpu_note") or manifest.get("cpu_note") or "not recorded")),
        ("git revision", str(env.get("git_revision", "unknown"))),
        ("CPU model", str(env.get("cpu_model", "unknown"))),
        ("cores", num(env.get("cpu_count"))),
        ("kernel", str(env.get("kernel", "unknown"))),
        ("Python", str(env.get("python", "unknown"))),
        ("packages", packages or "not recorded"),
    ]
    return [Heading("Run"), Table(["field", "value"], rows, "ll")]


def headline_section(summary: Mapping[str, Any]) -> list[Block]:
    rows = [(row["label"], headline_value(row), headline_ci(row), headline_note(row))
            for row in summary.get("headlines", [])]
    if not rows:
        return [Heading("Headlines"), Paragraph("No headline figures: nothing comparable was measured.")]
    rate = summary.get("headline_rate")
    intro = (f"Ratios are {summary.get('comparison', '')}, quoted at {rate} req/s: the highest journey "
             "rate at which every placement was valid and met the p99 objective (else the lowest "
             "measured)." if rate else "No journey rate was measured in every placement.")
    return [Heading("Headlines"), Paragraph(intro),
            Table(["figure", "value", "95% CI", "note"], rows, "lrrl")]


def hop_section(summary: Mapping[str, Any], figures: Mapping[str, str]) -> list[Block]:
    hops, floors = summary.get("hops", {}), summary.get("floors", {})
    blocks: list[Block] = [Heading("Hop cost"), Paragraph(
        "A /chain?k= request calls k components in turn (" + " -> ".join(CHAIN) + ", first k+1 of "
        "them); in each placement a call is either a function call or an HTTP hop. Requests are "
        "sent at a low constant rate, each round of k = 0..4 and the two floors in a seeded "
        "random order, so chains do not overlap and no k always follows the same request. One call's "
        "cost is the least-squares slope of p50 over k = 0..4. It is set against two floors "
        "measured in the same run, on the same CPUs and at the same pace: a raw keep-alive HTTP "
        "round trip (http.client to a minimal Flask endpoint under the same gunicorn settings) "
        "and a bare hop (the same call made from inside such a server: nested minus direct, both "
        "requested by the load generator in the same step, so its own overhead cancels). Paced "
        "calls cost more than back-to-back ones: between requests the CPUs idle, and every "
        "wake-up costs.")]
    if not hops:
        blocks.append(Paragraph("The hop chain was not measured in this run."))
    else:
        rows = []
        ks = sorted({k for h in hops.values() for k in h.get("per_k", {})}, key=int)
        for k in ks:
            for placement, h in hops.items():
                if k not in h.get("per_k", {}):
                    continue
                http_hops = h.get("http_hops_per_chain", [])
                rows.append([k, placement, num(http_hops[int(k)]) if int(k) < len(http_hops) else "n/a",
                             *(with_ci(h["per_k"][k].get(key)) for key, _ in LATENCY_KEYS)])
        blocks.append(Table(["k", "placement", "HTTP hops", "p50 µs (95% CI)", "p99 µs (95% CI)",
                             "p99.9 µs (95% CI)"], rows, "llrrrr"))
        ratio_keys = sorted({key for h in hops.values() for key in h if key.startswith("per_call_vs_")},
                            key=lambda key: (key != "per_call_vs_http_floor", key))
        blocks.append(Table(
            ["placement", "one call µs (95% CI)",
             *(f"one call / {_floor_name(key)} p50 (95% CI)" for key in ratio_keys),
             "CPU-ms per chain request (95% CI)"],
            [[p, with_ci(h.get("per_call_us"), 1), *(with_ci(h.get(key), 2, "x") for key in ratio_keys),
              with_ci(h.get("cpu_ms_per_request"), 3)] for p, h in hops.items()],
            "l" + "r" * (len(ratio_keys) + 2)))
    if floors:
        blocks.append(Table(["floor", "p50 µs (95% CI)", "p99 µs (95% CI)",
                             "p99.9 µs (95% CI)", "samples"],
                            [[FLOOR_LABELS.get(kind, f.get("meaning") or kind),
                              *(with_ci(f.get(key)) for key, _ in LATENCY_KEYS), num(f.get("samples"))]
                             for kind, f in floors.items()], "lrrrr"))
    else:
        blocks.append(Paragraph("The raw TCP and HTTP floors were not measured in this run."))
    if "hop_cost" in figures:
        blocks.append(Figure(figures["hop_cost"], "p50 per k per placement against the floors"))
    for name in sorted(n for n in figures if n.startswith("spectrum_hops_k")):
        blocks.append(Figure(figures[name], f"hop chain k={name.removeprefix('spectrum_hops_k')}: "
                                            "percentile spectrum per placement"))
    return blocks


def journey_section(summary: Mapping[str, Any], steps: pd.DataFrame,
                    figures: Mapping[str, str]) -> list[Block]:
    journey = summary.get("journey", {})
    blocks: list[Block] = [Heading("Journey"), Paragraph(
        "The user mix (search, checkout, inbox, top-up) at each open-loop arrival rate. A rung is "
        "invalid when the schedule was not kept: requests completed in time fell more than 2% "
        "short of it (the placement was past its capacity, or the generator behind), sends were "
        "late, or the generator was busy. Past capacity, latency grows with the length of the "
        "step, so such a rung's figures describe a queue, not a steady state. Latencies include "
        "failed requests; the throughput at the objective counts only rungs with at most 1% "
        "errors. CPU is CPU-ms of the system under "
        "test per completed request (= CPU-seconds per 1000 requests); RSS is the peak total of "
        "its processes.")]
    rungs = [(rate, p, journey[p][rate]) for rate in _rates(journey) for p in journey
             if rate in journey[p]]
    if not rungs:
        return blocks + [Paragraph("The journey was not measured in this run.")]
    blocks.append(Heading("Latency from intended send", 3))
    blocks.append(Table(
        ["req/s", "placement", "requests", "p50 µs (95% CI)", "p99 µs (95% CI)", "p99.9 µs (95% CI)",
         "error rate"],
        [[rate, p, num(e.get("completed")), *(with_ci(e.get(key)) for key, _ in LATENCY_KEYS),
          _percent(e.get("error_rate"), 2)] for rate, p, e in rungs], "llrrrrr"))
    blocks.append(Heading("Load, validity and resources", 3))
    blocks.append(Table(
        ["req/s", "placement", "scheduled req/s", "achieved req/s", "valid", "reasons",
         "CPU-ms per request (95% CI)", "peak RSS MiB", "generator CPU (max)", "send lateness p99 µs"],
        [[rate, p, num(e.get("scheduled_rate"), 2), num(e.get("achieved_rate"), 2),
          "yes" if e.get("valid") else "NO", _invalid_reasons(steps, p, rate) or "-",
          with_ci(e.get("cpu_ms_per_request"), 3), num(e.get("rss_mib"), 1),
          _percent(e.get("generator_cpu_max"), 1, " of a core"), num(e.get("lateness_p99_us"))]
         for rate, p, e in rungs], "llrrllrrrr"))
    lag_rows = [[rate, p, num(e.get("payments")), num(e.get("notifications")),
                 *(num(e["notification_lag_us"].get(key)) for key in ("p50_us", "p99_us", "p999_us",
                                                                      "max_us"))]
                for rate, p, e in rungs if e.get("notification_lag_us")]
    if lag_rows:
        blocks.append(Heading("Notification lag (payment event to notification stored)", 3))
        blocks.append(Table(["req/s", "placement", "payments", "notifications", "lag p50 µs",
                             "lag p99 µs", "lag p99.9 µs", "lag max µs"], lag_rows, "llrrrrrr"))
    name_rows = [[rate, name, p, *(with_ci(per.get(key)) for key, _ in LATENCY_KEYS[:2])]
                 for rate, p, e in rungs for name, per in e.get("per_name", {}).items()]
    if name_rows:
        name_rows.sort(key=lambda row: (float(row[0]), row[1]))
        blocks.append(Heading("Per request name", 3))
        blocks.append(Table(["req/s", "request", "placement", "p50 µs (95% CI)", "p99 µs (95% CI)"],
                            name_rows, "lllrr"))
    for name, caption in (("latency_vs_rate", "journey p50 and p99 against the arrival rate"),
                          ("resources", "CPU per request and memory per placement"),
                          ("notification_lag", "notification lag per placement")):
        if name in figures:
            blocks.append(Figure(figures[name], caption))
    for rate in _rates(journey):
        if f"spectrum_journey_{rate}" in figures:
            blocks.append(Figure(figures[f"spectrum_journey_{rate}"],
                                 f"journey at {rate} req/s: percentile spectrum per placement"))
    return blocks


def ratio_section(summary: Mapping[str, Any]) -> list[Block]:
    labels = {"p50_us": "p50", "p99_us": "p99", "p999_us": "p99.9",
              "cpu_ms_per_request": "CPU per request", "rss": "peak RSS"}
    rows = []
    for pair, per_rate in summary.get("ratios", {}).items():
        for rate in sorted(per_rate, key=float):
            for key, ratio in per_rate[rate].items():
                if ratio.get("ci95"):
                    verdict = "significant" if ratio.get("significant") else "not significant"
                else:
                    verdict = "no CI"
                rows.append([pair, rate, labels.get(key, key), _times(ratio.get("value")),
                             _times_ci(ratio.get("ci95")), verdict])
    blocks: list[Block] = [Heading("Ratios")]
    if not rows:
        return blocks + [Paragraph("No ratios: the journey was not measured in two placements at "
                                   "a common rate.")]
    return blocks + [Paragraph("Each placement against the baseline at each journey rate; a ratio "
                               "is significant when its 95% interval excludes 1.0."),
                     Table(["ratio", "req/s", "figure", "value", "95% CI", "verdict"], rows, "lllrrl")]


def throughput_section(summary: Mapping[str, Any]) -> list[Block]:
    rows = [[p, f"{num(t.get('objective_p99_ms'), 1)} ms",
             num(t.get("highest_passing_rate"), 0) if t.get("highest_passing_rate") else "none",
             t.get("text", "")]
            for p, t in summary.get("throughput_at_objective", {}).items()]
    blocks: list[Block] = [Heading("Throughput at the p99 objective")]
    if not rows:
        return blocks + [Paragraph("Not measured (no journey).")]
    return blocks + [Paragraph("The highest valid rung of the rate ladder whose p99 met the "
                               "objective; the true limit lies between it and the next rung."),
                     Table(["placement", "p99 objective", "highest passing req/s", "verdict"],
                           rows, "lrrl")]


def _invalid_reasons(steps: pd.DataFrame, placement: str, rate: str) -> str:
    """The distinct reasons the journey steps at (placement, rate) were invalid, joined."""
    needed = {"experiment", "placement", "rate", "invalid_reasons"}
    if steps.empty or not needed <= set(steps.columns):
        return ""
    rows = steps[(steps.experiment == "journey") & (steps.placement == placement)
                 & (steps.rate.astype(float) == float(rate))]
    reasons = [r for text in rows.invalid_reasons.dropna().astype(str) for r in text.split("; ") if r]
    return "; ".join(dict.fromkeys(reasons))


def _floor_name(ratio_key: str) -> str:
    """"per_call_vs_http_floor" -> "raw keep-alive HTTP round trip"."""
    kind = ratio_key.removeprefix("per_call_vs_").removesuffix("_floor")
    return FLOOR_LABELS.get(kind, kind)


def _percent(fraction: Any, digits: int, suffix: str = "") -> str:
    if fraction is None:
        return "n/a"
    return f"{float(fraction) * 100:.{digits}f}%{suffix}"


def _times(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f}x"


def _times_ci(ci: Sequence[float] | None) -> str:
    return f"{ci[0]:.2f}x .. {ci[1]:.2f}x" if ci else ""
