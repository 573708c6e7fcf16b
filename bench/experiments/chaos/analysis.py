"""The chaos experiment's analysis (from the run's files) and its report sections: the
availability and recovery table per placement and plan, the oracle's verdicts, and a
timeline per plan (answered and errors per second, median and maximum latency per second,
fault windows shaded)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.experiments.base import Analysis
from bench.experiments.chaos.experiment import DETAILS
from bench.experiments.chaos.measures import fmt_share, summarise, timeline, window_span
from bench.experiments.chaos.oracle import read_ops
from bench.render.display import TOO_FEW
from bench.render.document import Block, Bullets, Figure, Heading, Paragraph, Table
from bench.render.plots import (ERROR_COLOUR, FAULT_COLOUR, NEUTRAL_COLOUR, compared,
                                left_out_handle, mark_left_out, placement_colour,
                                plain_log_labels, pyplot, rate_text, save, wrapped)
from bench.results.model import QUANTILE, Headline
from bench.results.reader import RunData
from bench.results.store import read_json

if TYPE_CHECKING:
    from bench.experiments.base import Experiment

ORACLE_COUNTS = ("money_lost_cents", "money_created_cents", "double_charged_keys",
                 "notifications_missing", "notifications_duplicated",
                 "notifications_unexpected", "outbox_backlog", "unresolved")


def analyse_chaos(experiment: "Experiment", run: RunData) -> Analysis:
    result: dict[str, Any] = {"settings": run.settings("chaos"), "placements": {}}
    headlines, violations = [], []
    for placement in run.placements:
        plans = {}
        for label, _ in run.rungs("chaos"):
            steps = run.steps_of("chaos", placement, label)
            if not steps:
                continue
            invalid = [f"trial {s.key.trial + 1}: {'; '.join(s.invalid_reasons)}"
                       for s in steps if not s.valid]
            written = [details(run, s) for s in steps]  # each step's file read once
            entry = summarise([(read_ops(run.dir / s.raw_dir), d) for s, d in zip(steps, written)])
            entry["invalid"] = invalid
            entry["trials"] = len(steps)
            breaker = {}
            for server, counts in run.calls(steps).items():
                for (kind, name), count in counts.items():
                    if kind == "resilience" and "breaker_" in name:
                        key = f"{server}->{name}"
                        breaker[key] = breaker.get(key, 0) + count
            entry["breaker_transitions"] = breaker
            lags = [d["lag_p99_ms"] for d in written if d.get("lag_p99_ms")]
            entry["lag_p99_ms_max"] = max(lags) if lags else None
            plans[label] = entry
            if not entry["oracle"].get("ok", False):
                violations.append(f"chaos {placement} {label}: the oracle found problems: "
                                  + ", ".join(entry["oracle"].get("problems", [])[:5]))
            headlines.append(Headline(
                f"chaos {label}, {placement}: availability during faults", "text",
                text=fmt_share(entry["availability"]["during"]),
                verdict=("oracle: nothing lost or duplicated" if entry["oracle"].get("ok")
                         else "oracle: PROBLEMS")))
        result["placements"][placement] = plans
    return Analysis(result, headlines, violations=violations)


def chaos_report(run: RunData, result: Mapping[str, Any], figures_dir: Path) -> list[Block]:
    settings = result.get("settings", {})
    blocks: list[Block] = [Heading("Chaos: faults under load"), Paragraph(
        f"Each step sends keyed top-ups, keyed checkouts, searches and inbox reads at "
        f"{settings.get('rate')} req/s while a fault plan runs against a supervised placement "
        f"(a crashed server is restarted on its port once the fault's downtime ends). A fault "
        f"hits the server hosting its component, so in the monolith it hits the whole shop. "
        f"'Answered' means a definite reply (2xx or 4xx); a 5xx or silence is an error, for a "
        f"write an unknown outcome. 'During' is from a fault's start until it was undone (for a "
        f"crash, until the restarted server answered); an operation's latency counts during a "
        f"fault when it was meant to be sent then, even if its answer came later, and a "
        f"percentile is shown only where it has the samples it needs (10/(1-q): 1,000 for a "
        f"p99). Recovery is the time from undoing a "
        f"fault to the first moment after which every operation for 1 s was answered. After "
        f"each step the oracle resends every unknown write with its own Idempotency-Key, waits "
        f"for the outbox to drain, and checks money, charges and notifications per user "
        f"against the operation log.")]
    rows, oracle_rows, problems = [], [], []
    for placement, plans in result.get("placements", {}).items():
        for label, e in plans.items():
            a, r, o = e["availability"], e["recovery_s"], e["oracle"]
            during, outside = e["latency_ms"]["during"], e["latency_ms"]["outside"]
            if e["windows"] == 0 and e.get("not_applied"):
                rows.append([placement, label, "not applicable: no hop into its target here",
                             *["-"] * 10])
                continue
            rows.append([placement, label, str(e["windows"]), fmt_share(a["during"]),
                         fmt_share(a["outside"]), _latency(during, "p90"),
                         _latency(during, "p99"), _latency(outside, "p99"), _ms(during["max"]),
                         _s(r["median"]), _s(r["max"]) + (f" ({r['not_recovered_in_step']} not)"
                                                         if r["not_recovered_in_step"] else ""),
                         str(e["restarts"]),
                         ", ".join(f"{k} {v}" for k, v in sorted(e["breaker_transitions"].items())
                                   if "open" in k and "half" not in k) or "-",
                         _ms(e.get("lag_p99_ms_max"))])
            oracle_rows.append([placement, label, str(o.get("writes", 0)),
                                str(o.get("unknown_before", 0)),
                                f"{o.get('resolved_done', 0)}/{o.get('resolved_by_resend', 0)}/"
                                f"{o.get('resolved_failed', 0)}",
                                *(str(o.get(k, 0)) for k in ORACLE_COUNTS),
                                "ok" if o.get("ok") else "PROBLEMS"])
            problems += [f"{placement}, {label}: {p}" for p in o.get("problems", [])[:10]]
            if e["invalid"]:
                problems += [f"{placement}, {label}: invalid {why}" for why in e["invalid"]]
    if not rows:
        return blocks + [Paragraph("Chaos was not measured in this run.")]
    blocks.append(Table(["placement", "plan", "faults", "answered during", "answered outside",
                         "p90 during ms", "p99 during ms", "p99 outside ms", "max during ms",
                         "recovery median s", "recovery max s", "restarts", "breaker opened",
                         "lag p99 ms"], rows, "llrrrrrrrrrrlr"))
    blocks.append(Heading("The oracle", 3))
    blocks.append(Table(["placement", "plan", "writes", "unknown",
                         "resolved: found done/done by resend/refused",
                         "money lost ¢", "money created ¢", "keys charged twice",
                         "not notified", "notified twice", "notified, never charged",
                         "outbox left", "unresolved", "verdict"], oracle_rows, "llrrrrrrrrrrrl"))
    if problems:
        blocks.append(Bullets(problems))
    for label, _ in run.rungs("chaos"):
        figure = timeline_figure(run, label, figures_dir / f"chaos-{label}.png")
        if figure:
            blocks.append(Figure(str(figure), f"timeline of {label}, first trial: answered and "
                                              f"errors per second, median and maximum latency "
                                              f"per second, faults shaded grey"))
    return blocks


def timeline_figure(run: RunData, label: str, out_path: Path) -> Path | None:
    """One column per placement (first trial): answered (in the placement's colour) and
    errors per second above, the median (solid) and maximum (dotted) latency per second in
    ms below on a log scale, each fault's span shaded grey. Columns share each row's y scale,
    so the placements compare by eye; a second whose median its samples do not support is
    a hollow mark at the foot."""
    order = {p: i for i, p in enumerate(run.placements)}  # baseline first, as in every table
    steps = sorted((s for s in run.steps_of("chaos", rung=label) if s.key.trial == 0),
                   key=lambda s: order.get(s.key.placement, len(order)))
    if not steps:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(2, len(steps), figsize=(5.5 * len(steps), 6.2), sharex=True,
                             sharey="row", squeeze=False, layout="constrained")
    no_median = False
    for col, step in enumerate(steps):
        ops = read_ops(run.dir / step.raw_dir)
        if not ops:
            continue
        colour = placement_colour(step.key.placement)
        t0 = ops[0]["t"]
        rows = timeline(ops, t0)
        ts = [row["t"] for row in rows]
        top, bottom = axes[0][col], axes[1][col]
        # each value belongs to its whole second: drawn as steps from the second's start
        top.step(ts, [row["answered_per_s"] for row in rows], where="post", color=colour)
        top.step(ts, [row["errors_per_s"] for row in rows], where="post", color=ERROR_COLOUR)
        for key, style in (("p50_ms", "-"), ("max_ms", ":")):
            bottom.step(ts, [row[key] if row[key] is not None else float("nan") for row in rows],
                        style, where="post", color=colour, linewidth=1.2)
        bottom.set_yscale("log")
        # the median needs its samples (Quantile.min_samples); a second short of them is marked
        gaps = [row["t"] + 0.5 for row in rows
                if row["p50_ms"] is None and row["max_ms"] is not None]
        mark_left_out(bottom, gaps, colour, marker="o")
        no_median = no_median or bool(gaps)
        for window in details(run, step).get("faults", []):
            if not window.get("applied", True):
                continue
            start, end = window_span(window)
            for ax in (top, bottom):
                ax.axvspan(start - t0, end - t0, color=FAULT_COLOUR, alpha=0.3, linewidth=0)
        top.set_title(step.key.placement, color=colour)
        top.grid(True, alpha=0.3)
        bottom.grid(True, which="both", alpha=0.3)
        bottom.set_xlabel("time since the schedule started (s)")
    axes[0][0].set_ylabel("operations per second (1/s)")
    axes[1][0].set_ylabel("latency per second (ms)")
    plain_log_labels(axes[1][0].yaxis)  # the row shares it
    fig.legend(handles=_timeline_handles([s.key.placement for s in steps], no_median),
               loc="outside lower center", ncol=3, fontsize="small")
    rate = run.settings("chaos").get("rate")
    fig.suptitle(wrapped(f"Chaos plan {label}{rate_text(rate)}, first trial: "
                         f"{compared(s.key.placement for s in steps)}\nanswered and errors per "
                         f"second, median and maximum latency per second", fig.get_figwidth()))
    return save(fig, out_path)


def _timeline_handles(placements: list[str], no_median: bool) -> list[Any]:
    """The timeline's legend: each placement's colour, the error line, the two latency
    styles, the fault shading and, if any, the seconds without a median."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles = [Line2D([], [], color=placement_colour(p), label=f"{p}: answered per second")
               for p in placements]
    handles += [Line2D([], [], color=ERROR_COLOUR, label="errors per second (5xx or no answer)"),
                Line2D([], [], color=NEUTRAL_COLOUR, linestyle="-",
                       label="median latency of the second"),
                Line2D([], [], color=NEUTRAL_COLOUR, linestyle=":",
                       label="maximum latency of the second"),
                Patch(color=FAULT_COLOUR, alpha=0.3,
                      label="fault: from injection until undone "
                            "(a crash: until the restart answered)")]
    if no_median:
        handles.append(left_out_handle(f"median, under {QUANTILE['p50'].min_samples} "
                                       f"operations that second", "o"))
    return handles


def details(run: RunData, step: Any) -> dict[str, Any]:
    """What the chaos experiment wrote beside the step's log: faults, restarts, oracle."""
    path = run.dir / step.raw_dir / DETAILS
    return read_json(path) if path.exists() else {}


def _latency(figures: Mapping[str, Any], key: str) -> str:
    """A percentile (ms), or why there is none: too few samples for it."""
    if figures.get(key) is None:
        return f"{TOO_FEW} ({figures.get('samples', 0):,})" if figures.get("samples") else "n/a"
    return _ms(figures[key])


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
