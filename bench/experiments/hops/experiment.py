"""Hop cost: what one component call costs in each placement, against floors from the same run.

``GET /chain?k=`` calls k components in turn (function calls in the monolith, HTTP hops
split); each round of k = 0..4 and two floor requests is sent at a low constant rate in a
seeded random order, so chains never overlap. One call's cost in a trial is the
least-squares slope of that trial's p50 over k; the estimate is the mean over valid trials
with a t interval. It is set against two floors, paired by trial:

* the bare hop, measured in the same step: the same keep-alive ``http.client`` call made
  from inside a gunicorn worker (nested minus direct, both requested by the generator);
* the raw keep-alive HTTP round trip from a standalone client, paced like the step, measured
  at the start of each trial (with a raw TCP round trip beside it).

"meets target" only when the ratio's whole interval is under the target.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.experiments.base import Analysis, Experiment, Rung, RunSession, StepLoad, validity
from bench.experiments.hops import plots as hop_plots
from bench.render import display
from bench.render.document import Block, Figure, Heading, Paragraph, Table
from bench.results import hdr
from bench.results.model import QUANTILES, Estimate, Headline, Ratio, estimates_to_json
from bench.results.reader import RunData
from bench.results.stats import (Blocks, least_squares_slope, paired_ratio, percentile_estimate,
                                 resample_weights, t_estimate)
from bench.system.floors import floor_servers, http_round_trips, tcp_round_trips
from bench.system.processes import pinned
from bench.system.shopclient import funded_users, log_in

if TYPE_CHECKING:
    from bench.experiments.hops.budget import HopFigures
    from shop.topology import Topology


FLOOR_HTTP, FLOOR_NESTED = "floor http", "floor nested"  # request names in the hop step
SCENARIO = f"{__package__}.scenario"  # its locustfile, beside this module
FLOOR_KINDS = {"tcp": "raw TCP round trip", "http": "raw keep-alive HTTP round trip",
               "http_nested": "HTTP round trip made from inside a gunicorn worker"}
HOP_TARGET = 1.3  # one call should cost at most this many floors


@dataclass(frozen=True)
class HopCostSettings:
    rate: float  # req/s over all k together, evenly spaced: low, so chains never overlap
    warmup_s: float
    duration_s: float
    floor_round_trips: int  # per floor and trial, paced at ``rate``
    ks: tuple[int, ...] = (0, 1, 2, 3, 4)
    target: float = HOP_TARGET


PROFILES = {
    "quick": HopCostSettings(rate=50, warmup_s=0.5, duration_s=3, floor_round_trips=40),
    "full": HopCostSettings(rate=50, warmup_s=2, duration_s=40, floor_round_trips=500),
    "smoke": HopCostSettings(rate=50, warmup_s=0.5, duration_s=1.5, floor_round_trips=30),
}


def chain_name(k: int) -> str:
    return f"chain k={k}"


class Hops(Experiment):
    """A chain of k = 0..4 component calls (/chain?k=) at a low constant rate, beside the raw
    TCP and HTTP round trips (the floors) measured in the same run.

    Per placement: each k's percentiles (µs), one call's cost (the slope over k), the bare
    hop, CPU per request and per HTTP hop, and one call against each floor as paired ratios."""

    name = "hops"
    title = "The cost of one component call, against floors from the same run"
    needs_own_processes = ("its floors (raw TCP and HTTP round trips) are servers it starts "
                           "and pins beside the placement's processes")
    default_order = 10

    def settings(self, profile: str, overrides: Mapping[str, Any] | None = None) -> HopCostSettings:
        return replace(PROFILES[profile], **dict(overrides or {}))

    def budget_figures(self) -> "HopFigures":
        from bench.experiments.hops.budget import HopFigures
        return HopFigures(self.name)

    def rungs(self, settings: HopCostSettings) -> list[Rung]:
        return [Rung("chain", float(settings.rate))]

    def start(self, session: RunSession, settings: HopCostSettings) -> None:
        session.progress.on_phase("starting the floor servers")
        launch = replace(session.launch, cpus=session.system_cpus)
        session.state_of(self)["floors"] = session.stack.enter_context(
            floor_servers(launch, session.store.dir / "logs"))

    def prepare(self, session: RunSession, settings: HopCostSettings, placement: str) -> None:
        # /chain is authenticated like the rest of the API: one user per placement
        users = funded_users(session.shop(self, placement).base_url, 1)
        session.state_of(self).setdefault("users", {})[placement] = users

    def before_trial(self, session: RunSession, settings: HopCostSettings, trial: int) -> None:
        state = session.state_of(self)
        # fresh tokens each trial: a long run must not outlive them (1 h)
        state["tokens"] = {p: log_in(session.shop(self, p).base_url, users)[0]
                           for p, users in state["users"].items()}
        floors = state["floors"]
        n, gap = settings.floor_round_trips, 1 / settings.rate  # paced like the hop step
        with pinned(session.system_cpus):
            measured = {"floor_tcp": tcp_round_trips(floors.tcp_address, n, gap_s=gap),
                        "floor_http": http_round_trips(floors.http_url, n, gap_s=gap),
                        "floor_http_nested": http_round_trips(floors.front_url, n, path="/nested",
                                                              gap_s=gap)}
        session.store.add_harness_histograms(f"raw/floors-t{trial}", measured, time.time(),
                                             "floor round trips in blocks of consecutive calls, us")

    def load(self, session: RunSession, settings: HopCostSettings, rung: Rung,
             placement: str) -> StepLoad:
        floors = session.state_of(self)["floors"]
        return StepLoad(SCENARIO, settings.warmup_s, settings.duration_s, "constant",
                        {"hops": list(settings.ks),
                         "token": session.state_of(self)["tokens"][placement],
                         "floors": {FLOOR_HTTP: floors.http_url + "/",
                                    FLOOR_NESTED: floors.front_url + "/nested"}},
                        reference=(FLOOR_HTTP, FLOOR_NESTED))

    # -- analysis --------------------------------------------------------------------------
    def legacy_rung(self, rate: float) -> str:
        return "chain"  # the one rung, whatever its rate

    def analyse(self, run: RunData, resamples: int, seed: int) -> Analysis:
        rng = np.random.default_rng(seed)
        settings = run.settings_of(self)
        ks, target = list(settings.ks), settings.target
        trials = sorted({s.key.trial for s in run.steps_of(self.name)})
        floors, raw_p50 = self._floors(run, trials, rng, resamples)
        per: dict[str, Any] = {}
        per_trial_cpu: dict[str, dict[int, float]] = {}
        warnings: list[str] = []
        names = [chain_name(k) for k in ks] + [FLOOR_HTTP, FLOOR_NESTED]
        for placement in run.placements:
            steps = run.steps_of(self.name, placement)
            if not steps:
                continue
            valid = [s for s in steps if s.valid]
            entry: dict[str, Any] = {
                **validity(steps),
                "http_hops_per_chain": http_hops(run.topology(placement), ks)}
            if not valid:
                per[placement] = entry
                continue
            blocks = run.blocks(valid, names)
            weights = resample_weights(next(iter(blocks.values())).strata, resamples, rng)
            entry["per_k"] = {str(k): estimates_to_json(
                {q.key: percentile_estimate(blocks[chain_name(k)], q, weights) for q in QUANTILES})
                for k in ks if chain_name(k) in blocks}
            slopes, bare = {}, {}
            for s in valid:
                p50 = {n: float(run.histogram(s, [n]).get_value_at_percentile(50)) for n in names}
                slope = least_squares_slope(ks, [p50[chain_name(k)] or None for k in ks])
                if slope is not None:
                    slopes[s.key.trial] = slope
                if p50[FLOOR_HTTP] and p50[FLOOR_NESTED]:
                    bare[s.key.trial] = p50[FLOOR_NESTED] - p50[FLOOR_HTTP]
            entry["per_call_us"] = t_estimate(list(slopes.values())).to_json()
            entry["per_call_us_by_trial"] = slopes
            entry["bare_hop_us"] = t_estimate(list(bare.values())).to_json()
            cpu = {s.key.trial: s.cpu_ms_per_request for s in valid if s.cpu_ms_per_request}
            per_trial_cpu[placement] = cpu
            entry["cpu_ms_per_request"] = t_estimate(list(cpu.values())).to_json()
            per_call = Estimate.from_json(entry["per_call_us"])
            measurable = per_call.ci95 is not None and per_call.low > 0
            for key, floor in (("per_call_vs_hop_floor", bare), ("per_call_vs_http_floor", raw_p50)):
                if not measurable:
                    entry[key] = {**Ratio(None, note="no measurable cost per call (its interval "
                                                     "reaches 0)").to_json(), "target": target,
                                  "verdict": "no cost to compare"}
                    continue
                common = sorted(set(slopes) & set(floor))
                r = paired_ratio([floor[t] for t in common], [slopes[t] for t in common])
                entry[key] = {**r.to_json(), "target": target, "verdict": r.verdict_against(target)}
            per[placement] = entry
        baseline = run.placements[0] if run.placements else None
        for other in run.placements[1:]:
            self._cpu_per_hop(per, per_trial_cpu, baseline, other)
        # The comparisons the run asked for (each NAME/NAME@base of --baseline-ref): one
        # call's cost paired by trial, the same figure a budget's ratio or growth reads.
        asked = [(a, b) for a, b in run.config.get("comparisons", []) if a in per and b in per]
        ratios = {f"{a}/{b}": self._per_call_ratio(per[a], per[b]).to_json() for a, b in asked}
        result = {"title": self.title, "settings": run.settings(self.name), "floors": floors,
                  "placements": per, "ratios": ratios}
        nothing = bool(per) and not any(e.get("valid_trials") for e in per.values())
        return Analysis(result, self._headlines(result, baseline), warnings, rests_on_nothing=nothing)

    def _floors(self, run: RunData, trials: list[int], rng: np.random.Generator,
                resamples: int) -> tuple[dict[str, Any], dict[int, float]]:
        out: dict[str, Any] = {}
        raw_p50: dict[int, float] = {}
        for kind in FLOOR_KINDS:
            histograms, strata = [], []
            for trial in trials:
                blocks = run.floor_blocks(trial, kind)
                histograms += blocks
                strata += [trial] * len(blocks)
                if kind == "http" and blocks:
                    raw_p50[trial] = float(hdr.merge(blocks).get_value_at_percentile(50))
            if not histograms:
                continue
            b = Blocks.from_histograms(histograms, strata)
            weights = resample_weights(b.strata, resamples, rng)
            out[kind] = {"label": FLOOR_KINDS[kind], **estimates_to_json(
                {q.key: percentile_estimate(b, q, weights) for q in QUANTILES})}
            if kind == "http":
                out[kind]["p50_by_trial"] = [raw_p50[t] for t in sorted(raw_p50)]
        return out, raw_p50

    @staticmethod
    def _per_call_ratio(new: Mapping[str, Any], old: Mapping[str, Any]) -> Ratio:
        """``new``'s cost per call over ``old``'s, paired by trial (trials valid in both)."""
        a, b = old.get("per_call_us_by_trial", {}), new.get("per_call_us_by_trial", {})
        common = sorted(set(a) & set(b))
        return paired_ratio([a[t] for t in common], [b[t] for t in common])

    @staticmethod
    def _cpu_per_hop(per: dict[str, Any], cpu: dict[str, dict[int, float]], baseline: str,
                     other: str) -> None:
        """The extra CPU per extra HTTP hop crossed, paired by trial (both ends of a hop)."""
        if other not in per or baseline not in per or other not in cpu or baseline not in cpu:
            return
        extra = (np.mean(per[other]["http_hops_per_chain"])
                 - np.mean(per[baseline]["http_hops_per_chain"]))
        if extra <= 0:
            return
        common = sorted(set(cpu[other]) & set(cpu[baseline]))
        values = [(cpu[other][t] - cpu[baseline][t]) / extra for t in common]
        per[other]["cpu_ms_per_hop"] = t_estimate(values).to_json()
        per[other]["cpu_ms_per_hop_by_trial"] = values

    @staticmethod
    def _headlines(result: Mapping[str, Any], baseline: str | None) -> list[Headline]:
        rows: list[Headline] = []
        per = result["placements"]
        for placement, e in per.items():
            if placement == baseline and len(per) > 1 and not any(e.get("http_hops_per_chain", ())):
                continue  # a chain of function calls: nothing to show beside the others
            if not e.get("valid_trials"):
                rows.append(Headline(f"one call, {placement}", "text", text="no valid trial",
                                     verdict="nothing valid"))
                continue
            rows.append(Headline(f"one call, {placement} (p50 slope over k)", "latency",
                                 Estimate.from_json(e["per_call_us"]),
                                 per_trial=tuple(e["per_call_us_by_trial"].values())))
            if "cpu_ms_per_hop" in e:
                rows.append(Headline(f"CPU per HTTP hop, {placement} (both ends)", "cpu",
                                     Estimate.from_json(e["cpu_ms_per_hop"]),
                                     per_trial=tuple(e["cpu_ms_per_hop_by_trial"])))
            for key, what in (("per_call_vs_hop_floor", "bare hop from a worker"),
                              ("per_call_vs_http_floor", "raw HTTP round trip")):
                doc = e.get(key)
                if doc:
                    verdict = doc["verdict"]
                    if verdict in ("meets", "misses", "inconclusive"):
                        verdict = f"{verdict} target <= {doc['target']}x"
                    rows.append(Headline(f"one call / {what}, {placement}", "ratio",
                                         ratio=Ratio.from_json(doc), verdict=verdict))
        for pair, doc in result.get("ratios", {}).items():
            r = Ratio.from_json(doc)
            rows.append(Headline(f"one call, {pair} (paired by trial)", "ratio", ratio=r,
                                 verdict=display.ratio_verdict(r)))
        raw = result["floors"].get("http", {})
        if raw.get("p50"):
            rows.append(Headline("raw keep-alive HTTP round trip p50 (http.client, paced)",
                                 "latency", Estimate.from_json(raw["p50"]),
                                 per_trial=tuple(raw.get("p50_by_trial", ()))))
        return rows

    def report(self, run: RunData, result: Mapping[str, Any], figures_dir: Path) -> list[Block]:
        return hops_report(result, figures_dir)


def http_hops(topology: Topology, ks: list[int]) -> list[int]:
    """How many HTTP hops ``/chain?k=`` crosses in ``topology`` for each k, as the shop
    itself counts them (``shop.placement``)."""
    from shop.placement import chain_http_hops
    return [chain_http_hops(topology, k) for k in ks]


def hops_report(result: Mapping[str, Any], figures_dir: Path) -> list[Block]:
    per, floors = result.get("placements", {}), result.get("floors", {})
    blocks: list[Block] = [Heading("Hop cost"), Paragraph(
        "A /chain?k= request calls k components in turn; in each placement a call is either a "
        "function call or an HTTP hop. Requests are sent at a low constant rate, each round of "
        "k = 0..4 and the two floor requests in a seeded random order, so chains do not overlap. "
        "One call's cost is, per trial, the least-squares slope of p50 over k; the figure is the "
        "mean over valid trials with a Student-t interval. It is set against two floors, paired "
        "by trial: the bare hop (the same keep-alive http.client call made from inside a gunicorn "
        "worker, nested minus direct, in the same step) and the raw keep-alive HTTP round trip "
        "from a standalone client paced like the step. A target is met only when the ratio's "
        "whole 95% interval is under it.")]
    if not per:
        return blocks + [Paragraph("The hop chain was not measured in this run.")]
    rows = []
    for placement, e in per.items():
        for k, est in e.get("per_k", {}).items():
            hops_k = e["http_hops_per_chain"]
            rows.append([k, placement, display.number(hops_k[int(k)]) if int(k) < len(hops_k) else "n/a",
                         *(display.estimate(Estimate.from_json(est.get(q))) for q in ("p50", "p99", "p99.9"))])
    blocks.append(Table(["k", "placement", "HTTP hops", "p50 µs", "p99 µs", "p99.9 µs"], rows, "llrrrr"))
    blocks.append(Table(
        ["placement", "valid trials", "one call µs", "one call / bare hop", "one call / raw HTTP",
         "CPU-ms per chain request", "invalid trials"],
        [[p, f"{e['valid_trials']}/{e['trials']}",
          display.estimate(Estimate.from_json(e.get("per_call_us")), 1),
          _ratio_cell(e.get("per_call_vs_hop_floor")), _ratio_cell(e.get("per_call_vs_http_floor")),
          display.estimate(Estimate.from_json(e.get("cpu_ms_per_request")), 3),
          "; ".join(e.get("invalid", [])) or "-"] for p, e in per.items()], "lrrllrl"))
    if floors:
        blocks.append(Table(["floor", "p50 µs", "p99 µs", "samples"],
                            [[f["label"], *(display.estimate(Estimate.from_json(f.get(q)))
                                            for q in ("p50", "p99")),
                              display.number(f.get("p50", {}).get("samples"))]
                             for f in floors.values()], "lrrr"))
    figure = hop_plots.hop_cost(
        {p: {"per_k": {k: {"p50": v.get("p50")} for k, v in e.get("per_k", {}).items()}}
         for p, e in per.items()},
        {kind: {"p50": f.get("p50")} for kind, f in floors.items()}, figures_dir / "hop-cost.png",
        {p: e.get("http_hops_per_chain") for p, e in per.items()},
        result.get("settings", {}).get("rate"))
    if figure:
        blocks.append(Figure(str(figure), "p50 per k per placement against the floors"))
    return blocks


def _ratio_cell(doc: Mapping[str, Any] | None) -> str:
    if not doc:
        return "n/a"
    r = Ratio.from_json(doc)
    return f"{display.ratio(r)}: {doc.get('verdict', '')}"


EXPERIMENT = Hops()
