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
from bench.render.plots import pyplot, save
from bench.results.model import Headline
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
                                              f"per second, faults shaded"))
    return blocks


def timeline_figure(run: RunData, label: str, out_path: Path) -> Path | None:
    """One column per placement (first trial): answered and errors per second above, the
    median and maximum latency per second below (log scale), each fault's span shaded."""
    steps = [s for s in run.steps_of("chaos", rung=label) if s.key.trial == 0]
    if not steps:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(2, len(steps), figsize=(5.5 * len(steps), 5.5), sharex=True,
                             squeeze=False)
    for col, step in enumerate(steps):
        ops = read_ops(run.dir / step.raw_dir)
        if not ops:
            continue
        t0 = ops[0]["t"]
        rows = timeline(ops, t0)
        ts = [row["t"] for row in rows]
        top, bottom = axes[0][col], axes[1][col]
        # each value belongs to its whole second: drawn as steps from the second's start
        top.step(ts, [row["answered_per_s"] for row in rows], where="post", label="answered /s")
        top.step(ts, [row["errors_per_s"] for row in rows], where="post", label="errors /s",
                 color="tab:red")
        for key, style in (("p50_ms", "-"), ("max_ms", ":")):
            bottom.step(ts, [row[key] if row[key] is not None else float("nan") for row in rows],
                        style, where="post", color="tab:purple", linewidth=1,
                        label="median" if key == "p50_ms" else "maximum")
        bottom.set_yscale("log")
        for window in details(run, step).get("faults", []):
            if not window.get("applied", True):
                continue
            start, end = window_span(window)
            for ax in (top, bottom):
                ax.axvspan(start - t0, end - t0, color="tab:orange", alpha=0.25, linewidth=0)
        top.set_title(f"{step.key.placement}: {label}")
        top.set_ylabel("operations per second")
        bottom.set_ylabel("latency per second, ms")
        bottom.legend(loc="upper right", fontsize="small")
        bottom.set_xlabel("seconds since the schedule started")
        top.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    return save(fig, out_path)


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
