"""The journey: the user mix (search, checkout, inbox, top-up) at a ladder of open-loop rates.

Per placement and rung: p50/p90/p99/p99.9 of all requests and per request name (µs, from
the intended send time), error rate, CPU-ms per request, memory (PSS, MiB), each pooled
over the trials that count (``analysis``), and notification lag (asked of the shop after
each step). Between placements, per rung: the ratio of the pooled figures, where both
placements sustained the rung. The headline rate is one every placement sustained with a
margin; capacity is the highest rate sustained; the throughput at the p99 objective is a
verdict on the interval, not the point.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.experiments.base import Analysis, Experiment, Rung, RunOption, RunSession, StepLoad
from bench.experiments.journey import plots as journey_plots
from bench.experiments.journey.analysis import (Pooled, capacity, headline_rung, notification_lag,
                                                ratios_at, rung_entry, standing_trials,
                                                throughput_at_objective)
from bench.experiments.journey.callgraph import CALL_GRAPH, probe_call_graph
from bench.experiments.journey.tracing import traced_analysis, tracing_report
from bench.render import display, plots
from bench.render.document import Block, Figure, Heading, Paragraph, Table
from bench.results.model import Estimate, Headline, Ratio, StepResult
from bench.results.reader import RunData
from bench.results.store import write_json_atomic
from bench.system.shopclient import funded_users, log_in
from shop.placement import GATEWAY

if TYPE_CHECKING:
    from bench.experiments.journey.budget import JourneyFigures

SCENARIO = f"{__package__}.scenario"  # its locustfile, beside this module
NAMES = ("search", "checkout", "inbox", "topup")


@dataclass(frozen=True)
class JourneySettings:
    rates: tuple[float, ...]  # req/s, the ladder
    warmup_s: float
    duration_s: float  # the shortest measured window, s
    # a rung's window is long enough for this many requests (at least ``duration_s``), so
    # every rung's pooled percentiles rest on as many samples as the top one's
    requests_per_step: int = 0
    trials: int | None = None  # None: the profile's; more for many short trials (RMIT)
    # The top rate is measured in this many trials only (None: all): with the headline's
    # margin (HEADLINE_MARGIN) the top rung is never the headline, only the capacity probe.
    probe_trials: int | None = None
    users: int = 8
    skus: int = 1000  # checkouts pick among the first this many products
    objective_p99_ms: float = 50.0  # throughput is reported at this p99
    lag_settle_s: float = 5.0  # how long to wait for the last payments to be notified

    def __post_init__(self) -> None:
        probe = self.probe_trials
        if probe is not None and (not isinstance(probe, int) or isinstance(probe, bool)
                                  or probe < 1):
            raise ValueError(f"journey.probe_trials must be a whole number of at least 1 (or "
                             f"null: every trial), not {probe!r}")


PROFILES = {
    # twelve short trials of at least 200 requests a rung: 2,400 per placement and rung, so a
    # pooled p99 is the 24th slowest (its 10/(1-q) = 1,000 and more), and t with 11 degrees
    # of freedom; the headline at 60 req/s needs 120 req/s sustained (HEADLINE_MARGIN)
    "quick": JourneySettings(rates=(60, 120), warmup_s=0.3, duration_s=2,
                             requests_per_step=200, trials=12, probe_trials=4),
    "full": JourneySettings(rates=(50, 100, 200, 300, 400, 500, 600, 800), warmup_s=5,
                            duration_s=20),
    "smoke": JourneySettings(rates=(30,), warmup_s=0.5, duration_s=1.5, users=2),
}


class Journey(Experiment):
    """The user mix (search, checkout, inbox, top-up) at each rate of a ladder, open-loop.

    Per placement and rung: p50/p90/p99/p99.9 (µs) from every valid trial's interval
    histograms, CPU-ms and PSS MiB per request, error rate and notification lag; per pair of
    placements, the ratio of pooled figures per rung; capacity and throughput at the p99
    objective; the headline rung is one every placement sustained with a margin
    (``analysis.headline_rung``)."""

    name = "journey"
    title = "The user mix at a ladder of open-loop arrival rates"
    default_order = 20
    run_options = (RunOption("p99-objective-ms", "objective_p99_ms",
                             "throughput is reported at this p99 objective", 0.1, 60_000,
                             "50 ms"),)

    def settings(self, profile: str, overrides: Mapping[str, Any] | None = None) -> JourneySettings:
        chosen = PROFILES[profile]
        return replace(chosen, **dict(overrides or {}))

    def budget_figures(self) -> "JourneyFigures":
        from bench.experiments.journey.budget import JourneyFigures
        return JourneyFigures(self.name, NAMES)

    def rungs(self, settings: JourneySettings) -> list[Rung]:
        """One rung per rate; the top one in ``probe_trials`` trials only, when set."""
        top = max(settings.rates)
        return [Rung(f"r{rate:g}", float(rate),
                     settings.probe_trials if rate == top and len(settings.rates) > 1 else None)
                for rate in settings.rates]

    def prepare(self, session: RunSession, settings: JourneySettings, placement: str) -> None:
        shop = session.shop(self, placement)
        users = funded_users(shop.base_url, settings.users)
        state = session.state_of(self)
        state.setdefault("users", {})[placement] = users
        # which component calls which per request kind (seambench predict's call graph)
        graphs = state.setdefault("call_graph", {})
        graphs[placement] = probe_call_graph(shop, log_in(shop.base_url, users[:1])[0], NAMES)
        write_json_atomic(session.store.path(CALL_GRAPH), graphs)

    def before_trial(self, session: RunSession, settings: JourneySettings, trial: int) -> None:
        # fresh tokens each trial: a long run must not outlive them (1 h)
        state = session.state_of(self)
        state["tokens"] = {p: log_in(session.shop(self, p).base_url, users)
                           for p, users in state["users"].items()}

    def load(self, session: RunSession, settings: JourneySettings, rung: Rung,
             placement: str) -> StepLoad:
        skus = min(settings.skus, session.launch.search.catalog_size)
        window_s = max(settings.duration_s, settings.requests_per_step / rung.rate)
        return StepLoad(SCENARIO, settings.warmup_s, window_s, session.arrival,
                        {"tokens": session.state_of(self)["tokens"][placement], "skus": skus})

    def after_step(self, session: RunSession, settings: JourneySettings, step: StepResult,
                   result: Any) -> None:
        from bench.system.shopquery import notification_lag  # asks the shop, over HTTP
        lag = notification_lag(session.shop(self, step.key.placement), result.measure_start_s,
                               result.measure_end_s, settings.lag_settle_s)
        step.extra.update(payments=lag.payments, notifications=lag.histogram.get_total_count(),
                          # the measured window (epoch s): which spans of a traced run are its
                          window_start_s=result.measure_start_s, window_end_s=result.measure_end_s)
        session.store.add_harness_histograms(step.raw_dir, {"notification_lag": [lag.histogram]},
                                             result.measure_start_s,
                                             "notification lag of the step's payments, us")

    # -- analysis --------------------------------------------------------------------------
    def analyse(self, run: RunData, resamples: int, seed: int) -> Analysis:
        settings = run.settings(self.name)  # as recorded, for the result
        if settings:
            objective_us = run.settings_of(self).objective_p99_ms * 1000
        else:  # a schema-1 run recorded its objective beside the profile, no settings
            objective_us = float(run.config.get("p99_objective_ms",
                                                run.settings_of(self).objective_p99_ms)) * 1000
        placements = run.placements
        rungs = run.rungs(self.name)
        per: dict[str, dict[str, Any]] = {p: {} for p in placements}
        pooled: dict[str, dict[str, Pooled | None]] = {}
        warnings: list[str] = []
        for label, rate in rungs:
            by_placement = {p: steps for p in placements
                            if (steps := run.steps_of(self.name, p, label))}
            standing = standing_trials(by_placement)
            pooled[label] = {}
            for placement, steps in by_placement.items():
                entry, rows = rung_entry(run, steps, standing, NAMES)
                counted = [s for s in steps if s.key.trial in entry["counted_trials"]]
                inside = inside_the_shop(run, placement, counted)
                lag = notification_lag(run, counted)
                if lag:
                    entry["notification_lag_us"] = lag
                    if lag["notifications"] < lag["payments"]:
                        warnings.append(
                            f"journey {placement} at {rate:g} req/s: "
                            f"{lag['payments'] - lag['notifications']} of {lag['payments']} "
                            "payments were not yet notified when the lag was read (the lag "
                            "percentiles leave the slowest out)")
                per[placement][label] = {"rate": rate, **entry, **({"inside": inside} if inside else {})}
                pooled[label][placement] = rows
        # A traced twin (run --trace) is measured to price tracing and dissect requests: its
        # not sustaining a rate must not take the untraced placements' headline away.
        traced = run.config.get("traced", {})
        label, why = headline_rung({p: e for p, e in per.items() if p not in traced}, rungs)
        ratios = {f"{other}/{under}": {lab: at for lab, _rate in rungs
                                       if (at := ratios_at(per, pooled[lab], under, other, lab))}
                  for other, under in run.pairs()}
        result = {"title": self.title, "settings": settings, "objective_p99_ms": objective_us / 1000,
                  "placements": per, "ratios": ratios, "headline_rung": label,
                  "headline_why": why,
                  "capacity": {p: capacity(per[p], rungs) for p in placements},
                  "throughput_at_objective": {p: throughput_at_objective(per[p], rungs, objective_us)
                                              for p in placements}}
        if run.config.get("traced") and rungs:  # run --trace
            # at the headline rate; else the lowest, over whatever trials were valid there
            # (a traced placement that did not sustain a rate is still worth dissecting)
            result["tracing"] = traced_analysis(run, per, label or rungs[0][0])
        return Analysis(result, self._headlines(result), warnings,
                        rests_on_nothing=bool(rungs) and label is None)

    def _headlines(self, result: Mapping[str, Any]) -> list[Headline]:
        rows: list[Headline] = []
        label = result["headline_rung"]
        if label is None:
            rows.append(Headline("journey: headline rate", "text",
                                 text=f"none: {result.get('headline_why', 'no rate was valid')}",
                                 verdict="nothing valid"))
        else:
            rate = next(e["rate"] for p in result["placements"].values()
                        for lab, e in p.items() if lab == label)
            for pair, per_rung in result["ratios"].items():
                at = per_rung.get(label, {})
                kinds = {result["placements"].get(p, {}).get(label, {}).get("memory_kind")
                         for p in pair.split("/")}
                # a deployed placement's memory is RSS (bench/system/scrape.py): say so
                memory = "memory (RSS)" if kinds == {"RSS"} else "memory (PSS)"
                for fig, name in (("p50", "journey p50"), ("p99", "journey p99"),
                                  ("cpu_ms_per_request", "CPU per request"), ("pss_mib", memory)):
                    if fig in at:
                        r = Ratio.from_json(at[fig])
                        rows.append(Headline(f"{name} {pair} @ {rate:g} req/s", "ratio", ratio=r,
                                             verdict=display.ratio_verdict(r)))
        for placement, doc in result.get("tracing", {}).items():
            adds = doc.get("adds_up")
            if adds:  # the traced median request's parts (+ the edge round trip) against the p50
                rows.append(Headline(
                    f"journey attribution, {placement}: the median traced request's parts",
                    "text", text=f"{adds['ratio']:.2f}x the measured p50",
                    verdict="adds up (within 10%)" if adds["within"] else "does not add up"))
        for placement, c in result.get("capacity", {}).items():
            rows.append(Headline(f"journey capacity (highest rate sustained), {placement}", "text",
                                 text=c["text"]))
        for placement, t in result["throughput_at_objective"].items():
            rows.append(Headline(f"journey throughput at p99 <= {result['objective_p99_ms']:g} ms, "
                                 f"{placement}", "text", text=t["text"], verdict=t["verdict"]))
        return rows

    # -- report ----------------------------------------------------------------------------
    def report(self, run: RunData, result: Mapping[str, Any], figures_dir: Path) -> list[Block]:
        return journey_report(run, result, figures_dir)


def inside_the_shop(run: RunData, placement: str, steps: list[StepResult]) -> dict[str, Any] | None:
    """What the servers counted in ``steps`` (their /metrics), per request their edge answered:
    requests each server answered, hops to each dependency; hop errors as counts. None
    when the run has no counts (older runs) or the edge answered nothing."""
    calls = run.calls(steps)
    topology = run.topology(placement)
    edge = GATEWAY if topology.gateway else next(iter(topology.processes), None)
    edge_requests = sum(n for (kind, _), n in calls.get(edge, {}).items() if kind == "request")
    if not edge_requests:
        return None
    hops: dict[str, float] = {}
    errors: dict[str, int] = {}
    for counted in calls.values():
        for (kind, name), n in counted.items():
            if kind == "hop":
                hops[name] = hops.get(name, 0) + n / edge_requests
            elif kind == "hop_error":
                errors[name] = errors.get(name, 0) + n
    return {"edge": edge, "edge_requests": edge_requests,
            "requests_per_edge_request": {
                server: sum(n for (kind, _), n in counted.items() if kind == "request") / edge_requests
                for server, counted in sorted(calls.items())},
            "hops_per_edge_request": dict(sorted(hops.items())), "hop_errors": errors}


def journey_report(run: RunData, result: Mapping[str, Any], figures_dir: Path) -> list[Block]:
    per = result.get("placements", {})
    blocks: list[Block] = [Heading("Journey"), Paragraph(
        "The user mix (search 55%, checkout 20%, inbox 15%, top-up 10%) at each open-loop "
        "arrival rate. A trial of a rate counts when it was measured in every placement and the "
        "harness spoiled none of its steps (late sends, a busy generator: such a trial was not "
        "measured, is run again once at the end of the run, and says nothing of the system); "
        "a placement *sustains* a rate when every counted trial of it was valid (steady: its "
        "latency did not climb through the window; errors at most 1%; the rate kept). Each "
        "figure is pooled over the counted trials: a percentile is read from their histograms "
        "added together, CPU per request is their CPU over their requests; its 95% interval is "
        "the delete-one-trial jackknife on the log scale, Student-t over the trials. "
        "Latencies are µs from the intended send time and include failed requests and "
        "censored ones (dropped or still in flight when the step ended, entered at their lower "
        "bound). CPU is CPU-ms of the system under test per request it served; memory is the "
        "peak PSS of its processes (pages shared between gunicorn's master and workers counted "
        "once). A percentile is printed only when at least 10/(1-q) samples support it.")]
    rows = [(label, p, per[p][label]) for label, _r in run.rungs("journey") for p in per
            if label in per[p]]
    if not rows:
        return blocks + [Paragraph("The journey was not measured in this run.")]
    blocks.append(Table(
        ["req/s", "placement", "sustained", "counted trials", "requests", "p50 µs", "p99 µs",
         "p99.9 µs", "errors+censored"],
        [[f"{e['rate']:g}", p, _sustained(e), f"{len(e.get('counted_trials', []))}/{e['trials']}",
          display.number(e.get("completed")),
          *(display.estimate(Estimate.from_json(e.get("latency", {}).get(k))) for k in ("p50", "p99", "p99.9")),
          display.percent(e.get("error_rate"), 2)] for label, p, e in rows], "lllrrrrrr"))
    blocks.append(Heading("Load, resources and validity", 3))
    blocks.append(Table(
        ["req/s", "placement", "achieved req/s", "CPU-ms per request", "memory MiB",
         "send lateness p99 µs", "generator CPU", "invalid trials"],
        [[f"{e['rate']:g}", p, display.number(e.get("achieved_rate"), 1),
          display.estimate(Estimate.from_json(e.get("cpu_ms_per_request")), 3),
          display.estimate(Estimate.from_json(e.get("pss_mib")), 1) + f" {e.get('memory_kind', '')}",
          display.number(e.get("lateness_p99_us")), display.percent(e.get("generator_cpu_max"), 0),
          "; ".join(e.get("invalid", [])) or "-"] for label, p, e in rows], "llrrrrrl"))
    lag_rows = [[f"{e['rate']:g}", p, display.number(lag["payments"]), display.number(lag["notifications"]),
                 *(display.estimate(Estimate.from_json(lag.get(k))) for k in ("p50", "p99")),
                 display.number(lag.get("max"))]
                for label, p, e in rows if (lag := e.get("notification_lag_us"))]
    if lag_rows:
        blocks.append(Heading("Notification lag (payment event to notification stored)", 3))
        blocks.append(Table(["req/s", "placement", "payments", "notified", "lag p50 µs", "lag p99 µs",
                             "lag max µs"], lag_rows, "llrrrrr"))
    inside_rows = [[f"{e['rate']:g}", p, display.number(inside["edge_requests"]),
                    ", ".join(f"{server} {n:.2f}" for server, n in inside["requests_per_edge_request"].items()),
                    ", ".join(f"{dep} {n:.2f}" for dep, n in inside["hops_per_edge_request"].items()) or "-",
                    ", ".join(f"{dep} {n}" for dep, n in inside["hop_errors"].items()) or "0"]
                   for label, p, e in rows if (inside := e.get("inside"))]
    if inside_rows:
        blocks.append(Heading("Inside the shop (each server's /metrics, valid trials)", 3))
        blocks.append(Paragraph("Per request the edge answered (warm-up included): the requests "
                                "each server answered and the hops made to each dependency, "
                                "summed over the servers that made them; failed hops as counts. "
                                "The harness's own requests (readiness, metrics) are left out."))
        blocks.append(Table(["req/s", "placement", "edge requests", "requests per edge request",
                             "hops per edge request", "failed hops"], inside_rows, "llrlll"))
    ratio_rows = []
    for pair, per_rung in result.get("ratios", {}).items():
        for label, figs in per_rung.items():
            for fig, doc in figs.items():
                r = Ratio.from_json(doc)
                ratio_rows.append([pair, label.removeprefix("r"), fig,
                                   display.ratio(r) if r.value is not None else "-",
                                   str(r.pairs), display.ratio_verdict(r) if r.value is not None
                                   else r.note])
    if ratio_rows:
        blocks.append(Heading("Ratios (paired by trial)", 3))
        blocks.append(Paragraph("Each trial ran the placements back to back, in a random order, "
                                "with the same arrivals; a ratio is the quotient of the two "
                                "pooled figures in the tables above (over the same counted "
                                "trials), its 95% interval the delete-one-pair jackknife of its "
                                "logarithm, Student-t over the pairs. There is none where a "
                                "placement did not sustain the rate: a queue's length is not "
                                "a latency to compare."))
        blocks.append(Table(["ratio", "req/s", "figure", "value (95% CI)", "pairs", "verdict"],
                            ratio_rows, "llllrl"))
    blocks.append(Heading("Capacity and throughput at the p99 objective", 3))
    blocks.append(Paragraph(f"Headline rate: {_headline_text(result)}."))
    blocks.append(Table(["placement", "capacity (highest rate sustained)", "p99 µs there"],
                        [[p, c["text"], display.estimate(Estimate.from_json(c.get("p99")))]
                         for p, c in result.get("capacity", {}).items()], "llr"))
    blocks.append(Table(["placement", "objective", "verdict", "where"],
                        [[p, f"p99 <= {result['objective_p99_ms']:g} ms", t["verdict"], t["text"]]
                         for p, t in result.get("throughput_at_objective", {}).items()], "llll"))
    figure = journey_plots.latency_vs_rate(
        {p: {f"{e['rate']:g}": {"p50": e.get("latency", {}).get("p50"),
                                "p99": e.get("latency", {}).get("p99"),
                                "left_out": _left_out(e)}
             for e in rungs.values()} for p, rungs in per.items()},
        figures_dir / "journey-latency-vs-rate.png", result.get("objective_p99_ms"))
    if figure:
        blocks.append(Figure(str(figure), "journey p50 and p99 against the arrival rate (valid trials)"))
    label = result.get("headline_rung")
    if label:
        spectra = {p: run.histogram_of(self_steps) for p in per
                   if (self_steps := run.steps_of("journey", p, label, valid_only=True))}
        figure = plots.percentile_spectrum(
            spectra, f"Journey at {label.removeprefix('r')} req/s, {plots.compared(spectra)}:"
                     f"\nlatency by percentile (valid trials)",
            figures_dir / f"spectrum-journey-{label}.png")
        if figure:
            blocks.append(Figure(str(figure), "percentile spectrum per placement at the headline rate"))
        at = {p: rungs[label] for p, rungs in per.items() if label in rungs}
        figure = plots.resources({p: e.get("cpu_ms_per_request") for p, e in at.items()},
                                 {p: Estimate.from_json(e.get("pss_mib")).value for p, e in at.items()},
                                 f"Journey at {label.removeprefix('r')} req/s, "
                                 f"{plots.compared(at)}:\nCPU and memory (PSS) of the system "
                                 f"under test",
                                 figures_dir / "resources.png")
        if figure:
            blocks.append(Figure(str(figure), "CPU per request and memory per placement"))
        figure = plots.notification_lag({p: e.get("notification_lag_us") for p, e in at.items()},
                                        f"Notification lag at {label.removeprefix('r')} "
                                        f"req/s, {plots.compared(at)}:\nfrom a payment to its "
                                        f"notification stored",
                                        figures_dir / "notification-lag.png")
        if figure:
            blocks.append(Figure(str(figure), "notification lag per placement"))
    return blocks + tracing_report(run, result, figures_dir)


def _left_out(entry: Mapping[str, Any]) -> str | None:
    """Why a rung has no point in the latency figure (None: it has one): a rung no trial of
    which stood was not measured; one with no valid standing trial has no figure to draw."""
    if not entry.get("standing_trials", entry.get("trials")):
        return "the load generator spoiled every trial at this rate"
    if not entry.get("counted_trials", entry.get("valid_trials")):  # older runs: no counted_trials
        return "no valid trial at this rate"
    return None


def _sustained(entry: Mapping[str, Any]) -> str:
    if not entry.get("standing_trials", entry.get("trials")):
        return "not measured"
    return "yes" if entry.get("sustained", entry.get("valid_trials") == entry.get("trials")) else "no"


def _headline_text(result: Mapping[str, Any]) -> str:
    label = result.get("headline_rung")
    if label is None:
        return f"none ({result.get('headline_why', 'no rate was valid')})"
    return f"{label.removeprefix('r')} req/s ({result.get('headline_why', '')})"


EXPERIMENT = Journey()
