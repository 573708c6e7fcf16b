"""The journey: the user mix (search, checkout, inbox, top-up) at a ladder of open-loop rates.

Per placement and rung: p50/p90/p99/p99.9 of all requests and per request name (µs, from
the intended send time, two-level bootstrap over the valid trials), error rate, CPU-ms per
request (per-trial values, t interval), memory (PSS, MiB), notification lag (asked of the
shop after each step). Between placements, per rung: paired ratios over trials. The
headline rate is the highest rate valid in every trial of every placement; the throughput
at the p99 objective is a verdict on the interval, not the point.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.experiments.base import (Analysis, Experiment, Rung, RunOption, RunSession, StepLoad,
                                    validity)
from bench.experiments.journey import plots as journey_plots
from bench.load.generator import MAX_ERROR_RATE
from bench.render import display, plots
from bench.render.document import Block, Figure, Heading, Paragraph, Table
from bench.results import hdr
from bench.results.model import (QUANTILE, QUANTILES, Estimate, Headline, Ratio, StepResult,
                                 estimates_to_json)
from bench.results.reader import RunData
from bench.results.stats import paired_ratio, percentile_estimate, resample_weights, t_estimate
from bench.system.shopclient import funded_users, log_in
from shop.placement import GATEWAY

if TYPE_CHECKING:
    from bench.experiments.journey.budget import JourneyFigures

SCENARIO = f"{__package__}.scenario"  # its locustfile, beside this module
NAMES = ("search", "checkout", "inbox", "topup")
RATIO_FIGURES = ("p50", "p99", "cpu_ms_per_request", "pss_mib")


@dataclass(frozen=True)
class JourneySettings:
    rates: tuple[float, ...]  # req/s, the ladder
    warmup_s: float
    duration_s: float
    users: int = 8
    skus: int = 1000  # checkouts pick among the first this many products
    objective_p99_ms: float = 50.0  # throughput is reported at this p99
    lag_settle_s: float = 5.0  # how long to wait for the last payments to be notified


PROFILES = {
    "quick": JourneySettings(rates=(50, 120, 200), warmup_s=1.5, duration_s=4),
    "full": JourneySettings(rates=(50, 100, 200, 300, 400, 500, 600, 800), warmup_s=5,
                            duration_s=20),
    "smoke": JourneySettings(rates=(30,), warmup_s=0.5, duration_s=1.5, users=2),
}


class Journey(Experiment):
    """The user mix (search, checkout, inbox, top-up) at each rate of a ladder, open-loop.

    Per placement and rung: p50/p90/p99/p99.9 (µs) from every valid trial's interval
    histograms, CPU-ms and PSS MiB per request, error rate and notification lag; per pair of
    placements, paired ratios per rung; throughput at the p99 objective; the headline rung
    is the highest one valid in every trial of every placement."""

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
        return [Rung(f"r{rate:g}", float(rate)) for rate in settings.rates]

    def prepare(self, session: RunSession, settings: JourneySettings, placement: str) -> None:
        users = funded_users(session.shop(self, placement).base_url, settings.users)
        session.state_of(self).setdefault("users", {})[placement] = users

    def before_trial(self, session: RunSession, settings: JourneySettings, trial: int) -> None:
        # fresh tokens each trial: a long run must not outlive them (1 h)
        state = session.state_of(self)
        state["tokens"] = {p: log_in(session.shop(self, p).base_url, users)
                           for p, users in state["users"].items()}

    def load(self, session: RunSession, settings: JourneySettings, rung: Rung,
             placement: str) -> StepLoad:
        skus = min(settings.skus, session.launch.search.catalog_size)
        return StepLoad(SCENARIO, settings.warmup_s, settings.duration_s, session.arrival,
                        {"tokens": session.state_of(self)["tokens"][placement], "skus": skus})

    def after_step(self, session: RunSession, settings: JourneySettings, step: StepResult,
                   result: Any) -> None:
        from bench.system.shopquery import notification_lag  # asks the shop, over HTTP
        lag = notification_lag(session.shop(self, step.key.placement), result.measure_start_s,
                               result.measure_end_s, settings.lag_settle_s)
        step.extra.update(payments=lag.payments, notifications=lag.histogram.get_total_count())
        session.store.add_harness_histograms(step.raw_dir, {"notification_lag": [lag.histogram]},
                                             result.measure_start_s,
                                             "notification lag of the step's payments, us")

    # -- analysis --------------------------------------------------------------------------
    def analyse(self, run: RunData, resamples: int, seed: int) -> Analysis:
        rng = np.random.default_rng(seed)
        settings = run.settings(self.name)  # as recorded, for the result
        if settings:
            objective_us = run.settings_of(self).objective_p99_ms * 1000
        else:  # a schema-1 run recorded its objective beside the profile, no settings
            objective_us = float(run.config.get("p99_objective_ms",
                                                run.settings_of(self).objective_p99_ms)) * 1000
        placements = run.placements
        rungs = run.rungs(self.name)
        per: dict[str, dict[str, Any]] = {p: {} for p in placements}
        per_trial: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
        warnings: list[str] = []
        for placement in placements:
            for label, rate in rungs:
                steps = run.steps_of(self.name, placement, label)
                if not steps:
                    continue
                entry, trial_values = self._rung(run, steps, rng, resamples, warnings)
                inside = inside_the_shop(run, placement, [s for s in steps if s.valid])
                per[placement][label] = {"rate": rate, **entry, **({"inside": inside} if inside else {})}
                per_trial[(placement, label)] = trial_values
        headline_rate = self._headline_rung(run, placements, rungs)
        ratios: dict[str, dict[str, dict[str, Any]]] = {}
        baseline = placements[0] if placements else None
        for other, under in run.pairs():
            pair = f"{other}/{under}"
            ratios[pair] = {}
            for label, _rate in rungs:
                a, b = per_trial.get((under, label)), per_trial.get((other, label))
                if a is None or b is None:
                    continue
                trials = sorted(set(a["p50"]) | set(b["p50"]))
                ratios[pair][label] = {
                    fig: paired_ratio([a[fig].get(t) for t in trials], [b[fig].get(t) for t in trials],
                                      supported=_supported(per, under, other, label, fig)).to_json()
                    for fig in RATIO_FIGURES}
        throughput = {p: throughput_at_objective(per[p], rungs, objective_us) for p in placements}
        result = {"title": self.title, "settings": settings, "objective_p99_ms": objective_us / 1000,
                  "placements": per, "ratios": ratios, "headline_rung": headline_rate,
                  "throughput_at_objective": throughput}
        headlines = self._headlines(result, baseline)
        return Analysis(result, headlines, warnings,
                        rests_on_nothing=bool(rungs) and headline_rate is None)

    def _rung(self, run: RunData, steps: list[StepResult], rng: np.random.Generator,
              resamples: int, warnings: list[str]) -> tuple[dict[str, Any], dict[str, dict[int, float]]]:
        valid = [s for s in steps if s.valid]
        entry: dict[str, Any] = {
            **validity(steps),
            "scheduled_rate": _mean([s.scheduled / s.duration_s for s in steps if s.duration_s]),
            "achieved_rate": _mean([s.completed_in_time / s.duration_s for s in steps if s.duration_s]),
            "completed": sum(s.completed for s in valid),
            "censored": sum(s.censored for s in valid),
            "error_rate": (sum(s.errors + s.censored for s in valid) / sum(s.scheduled for s in valid)
                           if valid and sum(s.scheduled for s in valid) else None),
            "lateness_p99_us": max((s.lateness_p99_us for s in steps), default=None),
            "generator_cpu_max": max((s.generator_cpu for s in steps), default=None)}
        trial_values: dict[str, dict[int, float]] = {f: {} for f in RATIO_FIGURES}
        if not valid:
            entry.update(latency=estimates_to_json({q.key: Estimate(None) for q in QUANTILES}),
                         per_name={}, cpu_ms_per_request=Estimate(None).to_json(),
                         pss_mib=Estimate(None).to_json())
            return entry, trial_values
        blocks = run.blocks(valid, NAMES)
        strata = next(iter(blocks.values())).strata
        weights = resample_weights(strata, resamples, rng)
        everything = replace(blocks[NAMES[0]], counts=sum(b.counts for b in blocks.values()))
        entry["latency"] = estimates_to_json({q.key: percentile_estimate(everything, q, weights)
                                              for q in QUANTILES})
        entry["per_name"] = {n: estimates_to_json({q.key: percentile_estimate(blocks[n], q, weights)
                                                   for q in QUANTILES})
                             for n in NAMES if blocks[n].total}
        for s in valid:
            h = run.histogram(s, NAMES)
            trial_values["p50"][s.key.trial] = float(h.get_value_at_percentile(50))
            trial_values["p99"][s.key.trial] = float(h.get_value_at_percentile(99))
            if s.cpu_ms_per_request is not None:
                trial_values["cpu_ms_per_request"][s.key.trial] = s.cpu_ms_per_request
            memory = s.system_pss_mib if s.system_pss_mib is not None else s.system_rss_mib
            if memory:
                trial_values["pss_mib"][s.key.trial] = float(memory)
        # each valid trial's own figure (µs, CPU-ms, MiB), for tests across runs (compare, check)
        entry["by_trial"] = {fig: {str(t): v for t, v in values.items()}
                             for fig, values in trial_values.items()}
        entry["cpu_ms_per_request"] = t_estimate(list(trial_values["cpu_ms_per_request"].values())).to_json()
        entry["pss_mib"] = t_estimate(list(trial_values["pss_mib"].values())).to_json()
        entry["memory_kind"] = "PSS" if all(s.system_pss_mib is not None for s in valid) else "RSS"
        lags = [h for s in valid if (h := run.notification_lag(s)) is not None]
        if lags:
            merged = hdr.merge(lags)
            payments = sum(int(s.extra.get("payments") or 0) for s in valid)
            notified = sum(int(s.extra.get("notifications") or 0) for s in valid)
            entry["notification_lag_us"] = {
                "count": merged.get_total_count(), "payments": payments, "notifications": notified,
                **{q.key: Estimate(float(merged.get_value_at_percentile(q.q)),
                                   samples=merged.get_total_count(),
                                   supported=merged.get_total_count() >= q.min_samples).to_json()
                   for q in QUANTILES},
                "max": merged.get_max_value()}
            if notified < payments:
                warnings.append(f"journey {steps[0].key.placement} at {steps[0].rate:g} req/s: "
                                f"{payments - notified} of {payments} payments were not yet notified "
                                "when the lag was read (the lag percentiles leave the slowest out)")
        return entry, trial_values

    @staticmethod
    def _headline_rung(run: RunData, placements: list[str], rungs: list[tuple[str, float]]) -> str | None:
        """The highest rung valid in every trial of every placement (None: there is none)."""
        best = None
        for label, _rate in rungs:
            steps = [s for p in placements for s in run.steps_of("journey", p, label)]
            measured = {s.key.placement for s in steps}
            if steps and measured == set(placements) and all(s.valid for s in steps):
                best = label
        return best

    def _headlines(self, result: Mapping[str, Any], baseline: str | None) -> list[Headline]:
        rows: list[Headline] = []
        label = result["headline_rung"]
        if label is None:
            rows.append(Headline("journey: headline rate", "text",
                                 text="none: no rate was valid in every trial of every placement",
                                 verdict="nothing valid"))
        else:
            rate = next(e["rate"] for p in result["placements"].values()
                        for lab, e in p.items() if lab == label)
            for pair, per_rung in result["ratios"].items():
                at = per_rung.get(label, {})
                for fig, name in (("p50", "journey p50"), ("p99", "journey p99"),
                                  ("cpu_ms_per_request", "CPU per request"), ("pss_mib", "memory (PSS)")):
                    if fig in at:
                        r = Ratio.from_json(at[fig])
                        rows.append(Headline(f"{name} {pair} @ {rate:g} req/s", "ratio", ratio=r,
                                             verdict=display.ratio_verdict(r)))
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


def throughput_at_objective(rungs: Mapping[str, Mapping[str, Any]], ladder: list[tuple[str, float]],
                            objective_us: float) -> dict[str, Any]:
    """Where on the ladder p99 crosses the objective. A rung *meets* it when every trial was
    valid, errors (with censored requests) are at most ``MAX_ERROR_RATE`` and the p99
    interval's upper bound is within the objective;
    it *misses* when the interval's lower bound is over it (or it is invalid); otherwise it
    is inconclusive, and the verdict says so."""
    verdicts = []
    for label, rate in ladder:
        e = rungs.get(label)
        if e is None:
            continue
        p99 = Estimate.from_json(e.get("latency", {}).get("p99"))
        if e["valid_trials"] < e["trials"] or (e.get("error_rate") or 0) > MAX_ERROR_RATE:
            verdicts.append((rate, "misses"))
        elif not p99.usable or p99.ci95 is None:
            verdicts.append((rate, "inconclusive"))
        elif p99.high <= objective_us:
            verdicts.append((rate, "meets"))
        elif p99.low > objective_us:
            verdicts.append((rate, "misses"))
        else:
            verdicts.append((rate, "inconclusive"))
    meets = [rate for rate, v in verdicts if v == "meets"]
    best = max(meets, default=None)
    said = ", ".join(f"{rate:g} req/s {v}" for rate, v in verdicts
                     if best is None or rate > best)
    if not verdicts:
        text, verdict = "not measured", "not measured"
    elif best is None and any(v == "inconclusive" for _, v in verdicts):
        text, verdict = f"not shown to meet it at any rate ({said})", "inconclusive"
    elif best is None:
        text, verdict = f"no rate met it ({said})", "misses"
    elif not said:
        text, verdict = f"at least {best:g} req/s (the top of the ladder)", "meets"
    else:
        text, verdict = f"at least {best:g} req/s ({said})", "meets"
    return {"highest_meeting_rate": best, "text": text, "verdict": verdict,
            "per_rate": [{"rate": r, "verdict": v} for r, v in verdicts]}


def _supported(per: Mapping[str, Mapping[str, Any]], a: str, b: str, label: str, fig: str) -> bool:
    """A percentile ratio is supported when both sides' pooled percentile is."""
    if fig not in QUANTILE:
        return True
    return all(Estimate.from_json(per[p].get(label, {}).get("latency", {}).get(fig)).supported
               for p in (a, b))


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 2) if values else None


def journey_report(run: RunData, result: Mapping[str, Any], figures_dir: Path) -> list[Block]:
    per = result.get("placements", {})
    blocks: list[Block] = [Heading("Journey"), Paragraph(
        "The user mix (search 55%, checkout 20%, inbox 15%, top-up 10%) at each open-loop "
        "arrival rate. Only valid trials enter a figure; an invalid trial is listed with its "
        "reasons. Latencies are µs from the intended send time and include failed requests and "
        "censored ones (dropped or still in flight when the step ended, entered at their lower "
        "bound). CPU is CPU-ms of the system under test per request it served; memory is the "
        "peak PSS of its processes (pages shared between gunicorn's master and workers counted "
        "once). A percentile is printed only when at least 10/(1-q) samples support it.")]
    rows = [(label, p, per[p][label]) for label, _r in run.rungs("journey") for p in per
            if label in per[p]]
    if not rows:
        return blocks + [Paragraph("The journey was not measured in this run.")]
    blocks.append(Table(
        ["req/s", "placement", "valid trials", "requests", "p50 µs", "p99 µs", "p99.9 µs",
         "errors+censored"],
        [[f"{e['rate']:g}", p, f"{e['valid_trials']}/{e['trials']}", display.number(e.get("completed")),
          *(display.estimate(Estimate.from_json(e.get("latency", {}).get(k))) for k in ("p50", "p99", "p99.9")),
          display.percent(e.get("error_rate"), 2)] for label, p, e in rows], "llrrrrrr"))
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
                ratio_rows.append([pair, label.removeprefix("r"), fig, display.ratio(r),
                                   str(r.pairs), display.ratio_verdict(r)])
    if ratio_rows:
        blocks.append(Heading("Ratios (paired by trial)", 3))
        blocks.append(Paragraph("Each trial ran both placements back to back with the same seed; "
                                "a ratio is the geometric mean of the per-trial ratios, its 95% "
                                "interval Student-t over the trials' log ratios."))
        blocks.append(Table(["ratio", "req/s", "figure", "value (95% CI)", "pairs", "verdict"],
                            ratio_rows, "llllrl"))
    blocks.append(Heading("Throughput at the p99 objective", 3))
    blocks.append(Table(["placement", "objective", "verdict", "where"],
                        [[p, f"p99 <= {result['objective_p99_ms']:g} ms", t["verdict"], t["text"]]
                         for p, t in result.get("throughput_at_objective", {}).items()], "llll"))
    figure = journey_plots.latency_vs_rate(
        {p: {f"{e['rate']:g}": {"p50": e.get("latency", {}).get("p50"),
                                "p99": e.get("latency", {}).get("p99")}
             for e in rungs.values() if e.get("valid_trials")} for p, rungs in per.items()},
        figures_dir / "journey-latency-vs-rate.png", result.get("objective_p99_ms"))
    if figure:
        blocks.append(Figure(str(figure), "journey p50 and p99 against the arrival rate (valid trials)"))
    label = result.get("headline_rung")
    if label:
        spectra = {p: run.histogram_of(self_steps) for p in per
                   if (self_steps := run.steps_of("journey", p, label, valid_only=True))}
        figure = plots.percentile_spectrum(spectra, f"journey at {label.removeprefix('r')} req/s: "
                                           "latency by percentile (valid trials)",
                                           figures_dir / f"spectrum-journey-{label}.png")
        if figure:
            blocks.append(Figure(str(figure), "percentile spectrum per placement at the headline rate"))
        at = {p: rungs[label] for p, rungs in per.items() if label in rungs}
        figure = plots.resources({p: e.get("cpu_ms_per_request") for p, e in at.items()},
                                 {p: Estimate.from_json(e.get("pss_mib")).value for p, e in at.items()},
                                 f"journey at {label.removeprefix('r')} req/s: CPU and memory "
                                 "(PSS) of the system under test", figures_dir / "resources.png")
        if figure:
            blocks.append(Figure(str(figure), "CPU per request and memory per placement"))
        figure = plots.notification_lag({p: e.get("notification_lag_us") for p, e in at.items()},
                                        f"notification lag at {label.removeprefix('r')} req/s",
                                        figures_dir / "notification-lag.png")
        if figure:
            blocks.append(Figure(str(figure), "notification lag per placement"))
    return blocks


EXPERIMENT = Journey()
