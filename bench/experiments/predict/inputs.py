"""What ``seambench predict`` reads from a run: a ``Calibration`` (all trials, and each trial
left out for the jackknife), the component call graph, and measured figures to check against.

The run must hold the journey (the monolith at the chosen rate, and a placement with every
component in its own process, whose call graph the journey probed) and the hops experiment
in both (one call's cost, the gateway's, CPU per hop). Every figure is paired by trial: a
trial index is one round of the run, in which every experiment measured every placement.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.experiments.hops.experiment import chain_name
from bench.experiments.journey.analysis import trial_rows
from bench.experiments.journey.callgraph import CALL_GRAPH
from bench.experiments.journey.experiment import NAMES
from bench.experiments.predict.model import (GATEWAY, Calibration, Call, CallGraph, KindLatency,
                                             servers_of)
from bench.results import hdr
from bench.results.model import Estimate, StepResult
from bench.results.reader import RunData, load_run
from bench.results.stats import least_squares_slope
from bench.results.store import SUMMARY
from shop.topology import Topology, chain_http_hops

EVENT_ROUTES = frozenset({"/internal/notify/deliver"})  # a call that delivers billing's event


class PredictError(ValueError):
    """A run that cannot calibrate the model, said in one line."""


@dataclass(frozen=True)
class Measured:
    """A placement's journey figures as its run's summary gives them (with intervals)."""

    p50_us: Estimate
    cpu_ms: Estimate
    memory_mib: Estimate
    lag_p50_us: float | None


@dataclass(frozen=True)
class RunInputs:
    run_id: str
    rung: str
    rate: float
    monolith: str  # the placement the latency, CPU and memory are shifted from
    split: str  # the placement with one component per process: call graph and hop costs
    full: Calibration
    left_out: list[Calibration]  # one per trial, for the jackknife interval
    graph: CallGraph
    baseline_servers: int
    trials: list[int]


def summary_of(run: RunData) -> dict[str, Any]:
    path = run.dir / SUMMARY
    if not path.is_file():
        raise PredictError(f"{run.dir} has no {SUMMARY}: analyse it first (seambench report)")
    return json.loads(path.read_text())


def _journey(summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    journey = summary.get("experiments", {}).get("journey")
    if not journey:
        raise PredictError(f"{run_dir} has no journey: predict needs one "
                           f"(seambench run --experiment hops --experiment journey)")
    return journey


def rung_at(journey: dict[str, Any], rate: float | None) -> str:
    """The journey rung measured at ``rate`` req/s (None: the headline rung)."""
    rungs = {label: doc["rate"] for per in journey["placements"].values()
             for label, doc in per.items()}
    if rate is None:
        if not journey.get("headline_rung"):
            raise PredictError("the run has no headline rung (no rate every placement "
                               "sustained): name one with --rate")
        return journey["headline_rung"]
    for label, r in rungs.items():
        if abs(r - rate) < 1e-9:
            return label
    raise PredictError(f"the run measured no journey rung at {rate:g} req/s "
                       f"(it has {', '.join(f'{r:g}' for r in sorted(set(rungs.values())))})")


def component_graph(probed: dict[str, Any], topology: Topology) -> CallGraph:
    """The probe's server-level answer (bench/experiments/journey/callgraph.py) of a placement with one
    component per process, as component-level calls per request kind."""
    owner = {proc: comps[0] for proc, comps in topology.processes.items()}
    owner[GATEWAY] = GATEWAY
    graph: dict[str, tuple[Call, ...]] = {}
    for kind, doc in probed.items():
        calls = []
        for server, per in doc.get("hops", {}).items():
            caller = owner.get(server.split("#")[0])
            for dependency, n in per.items():
                callee = owner.get(dependency)
                if caller is None or callee is None:
                    continue  # leaves of a scatter: not part of the journey
                events = sum(v for server_, routes in doc.get("requests", {}).items()
                             if server_.split("#")[0] == dependency  # every replica of it
                             for route, v in routes.items() if route in EVENT_ROUTES)
                events = min(events, n) if caller != GATEWAY else 0.0
                if n - events > 0:
                    calls.append(Call(caller, callee, n - events))
                if events > 0:
                    calls.append(Call(caller, callee, events, event=True))
        graph[kind] = tuple(calls)
    return graph


def _one_per_process(topology: Topology) -> bool:
    return (len(topology.processes) > 1 and all(len(c) == 1 for c in topology.processes.values())
            and not topology.leaf_servers())


def read_inputs(run_dir: str | Path, rate: float | None = None) -> RunInputs:
    """Everything predict needs from the run in ``run_dir``. Raises PredictError (one line)
    when the run cannot calibrate the model."""
    try:
        run = load_run(run_dir)
    except FileNotFoundError as exc:
        raise PredictError(str(exc)) from None
    journey = _journey(summary_of(run), run.dir)
    rung = rung_at(journey, rate)
    topologies = {p: run.topology(p) for p in run.placements}
    monolith = next((p for p, t in topologies.items() if len(t.processes) == 1
                     and not t.gateway), None)
    split = next((p for p, t in topologies.items() if _one_per_process(t)), None)
    if monolith is None or split is None:
        raise PredictError("the run must measure a monolith and a placement with every "
                           "component in its own process (e.g. monolith and microservices)")
    graphs_path = run.dir / CALL_GRAPH
    probed = json.loads(graphs_path.read_text()).get(split) if graphs_path.is_file() else None
    if not probed:
        raise PredictError(f"the run has no call graph of {split!r} ({CALL_GRAPH}): it was "
                           f"made before predict existed; measure again")
    per = journey["placements"]
    counted = {p: set(per[p][rung].get("counted_trials", [])) for p in (monolith, split)
               if rung in per.get(p, {})}
    if not counted.get(monolith):
        raise PredictError(f"{monolith!r} has no valid trial at {rung}")
    data = _TrialData.read(run, rung, monolith, split, counted)
    data.rate = float(per[monolith][rung]["rate"])
    data.cores = len(run.config.get("cpus", {}).get("system") or [0])
    trials = sorted(data.trials())
    full = data.calibration(None)
    if full is None:
        raise PredictError(f"the run has too little at {rung} to calibrate from: the monolith's "
                           f"journey, its memory and {split!r}'s, and valid hops steps in both "
                           f"with CPU figures are all needed")
    left_out = [c for t in trials if (c := data.calibration(t)) is not None]
    return RunInputs(run.manifest.get("run_id", run.dir.name), rung, float(per[monolith][rung]["rate"]),
                     monolith, split, full, left_out, component_graph(probed, topologies[split]),
                     servers_of(topologies[monolith]), trials)


@dataclass
class _TrialData:
    """Every per-trial figure the calibration pools, keyed by trial."""

    kinds: dict[str, tuple[np.ndarray, dict[int, np.ndarray]]]  # kind -> (values, trial -> counts)
    cpu: dict[int, tuple[float, int]]  # monolith: trial -> (CPU-ms, requests served)
    memory: dict[str, dict[int, float]]  # placement -> trial -> MiB
    servers: dict[str, int]
    lag: dict[str, dict[int, Any]]  # placement -> trial -> lag histogram
    hop: dict[int, float]  # trial -> one call over HTTP less one by function call, µs
    gateway: dict[int, float]  # trial -> chain k=0 p50, split less monolith, µs
    hop_cpu: dict[int, float]  # trial -> CPU-ms per HTTP hop, both ends
    rate: float = 0.0  # req/s of the rung
    cores: int = 1  # the CPUs the placements were pinned to

    @classmethod
    def read(cls, run: RunData, rung: str, monolith: str, split: str,
             counted: dict[str, set[int]]) -> "_TrialData":
        def steps(placement: str) -> list[StepResult]:
            return [s for s in run.steps_of("journey", placement, rung, valid_only=True)
                    if s.key.trial in counted.get(placement, set())]

        mono_steps = steps(monolith)
        kinds = {}
        for name, blocks in run.blocks(mono_steps, list(NAMES)).items():
            if blocks.total:
                trials, rows = trial_rows(blocks)
                kinds[name] = (blocks.values, dict(zip(trials, rows)))
        memory = {p: {s.key.trial: float(s.system_pss_mib if s.system_pss_mib is not None
                                         else s.system_rss_mib or 0) for s in steps(p)}
                  for p in (monolith, split)}
        lag = {p: {s.key.trial: h for s in steps(p) if (h := run.notification_lag(s)) is not None}
               for p in (monolith, split)}
        hop, gateway, hop_cpu = _hop_figures(run, monolith, split)
        return cls(kinds, {s.key.trial: (s.system_cpu_s * 1000, s.served) for s in mono_steps},
                   memory, {p: servers_of(run.topology(p)) for p in (monolith, split)}, lag,
                   hop, gateway, hop_cpu)

    def trials(self) -> set[int]:
        return (set(self.cpu) | set(self.hop) | set(self.gateway) | set(self.hop_cpu)
                | {t for m in self.memory.values() for t in m})

    def calibration(self, without: int | None) -> Calibration | None:
        """Pooled over every trial but ``without`` (None: all); None when an input would be
        left with nothing."""
        def keep(d: dict[int, Any]) -> list[Any]:
            return [v for t, v in sorted(d.items()) if t != without]

        kinds = {}
        for name, (values, rows) in self.kinds.items():
            kept = keep(rows)
            if not kept:
                return None
            kinds[name] = KindLatency(values, np.sum(kept, axis=0))
        cpu, hop, gateway, hop_cpu = keep(self.cpu), keep(self.hop), keep(self.gateway), keep(self.hop_cpu)
        memory = {p: keep(m) for p, m in self.memory.items()}
        if not (cpu and hop and gateway and hop_cpu and all(memory.values())):
            return None
        (mono, mono_mib), (split, split_mib) = memory.items()
        extra = self.servers[split] - self.servers[mono]
        lag = {p: _p50(keep(h)) for p, h in self.lag.items()}
        return Calibration(kinds, sum(c for c, _ in cpu) / max(1, sum(n for _, n in cpu)),
                           float(np.mean(mono_mib)), float(np.mean(hop)), float(np.mean(gateway)),
                           float(np.mean(hop_cpu)),
                           (float(np.mean(split_mib)) - float(np.mean(mono_mib))) / max(1, extra),
                           lag[mono], lag[split], self.rate, self.cores)


def _p50(histograms: Sequence[Any]) -> float | None:
    return float(hdr.merge(histograms).get_value_at_percentile(50)) if histograms else None


def _hop_figures(run: RunData, monolith: str, split: str
                 ) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Per trial, from the hops experiment: one call's extra cost (the split's p50 slope over
    k less the monolith's), the gateway's (chain k=0 p50, split less monolith) and the CPU
    of one HTTP hop (CPU per chain request, split less monolith, over the extra hops)."""
    steps = {p: {s.key.trial: s for s in run.steps_of("hops", p, valid_only=True)}
             for p in (monolith, split)}
    if not steps[monolith] or not steps[split]:
        raise PredictError(f"the run has no valid hops steps in {monolith!r} and {split!r}: "
                           f"predict needs them (seambench run --experiment hops ...)")
    ks = list(run.settings("hops").get("ks", (0, 1, 2, 3, 4)))
    names = [chain_name(k) for k in ks]
    extra_hops = float(np.mean([chain_http_hops(run.topology(split), k) for k in ks])
                       - np.mean([chain_http_hops(run.topology(monolith), k) for k in ks]))
    hop, gateway, cpu = {}, {}, {}
    for trial in sorted(set(steps[monolith]) & set(steps[split])):
        p50 = {p: [float(run.histogram(steps[p][trial], [n]).get_value_at_percentile(50))
                   for n in names] for p in (monolith, split)}
        if all(p50[monolith]) and all(p50[split]):
            hop[trial] = (least_squares_slope(ks, p50[split])
                          - least_squares_slope(ks, p50[monolith]))
            gateway[trial] = p50[split][0] - p50[monolith][0]
        a, b = steps[split][trial].cpu_ms_per_request, steps[monolith][trial].cpu_ms_per_request
        if a is not None and b is not None and extra_hops > 0:
            cpu[trial] = (a - b) / extra_hops
    return hop, gateway, cpu


def measured(summary: dict[str, Any], placement: str, rate: float) -> Measured | None:
    """``placement``'s journey figures at ``rate`` in an analysed run, or None."""
    per = summary.get("experiments", {}).get("journey", {}).get("placements", {}).get(placement)
    doc = next((d for d in (per or {}).values() if abs(d.get("rate", -1) - rate) < 1e-9), None)
    if doc is None or doc.get("latency", {}).get("p50", {}).get("value") is None:
        return None
    lag = doc.get("notification_lag_us") or {}
    return Measured(Estimate.from_json(doc["latency"]["p50"]),
                    Estimate.from_json(doc["cpu_ms_per_request"]),
                    Estimate.from_json(doc["pss_mib"]), (lag.get("p50") or {}).get("value"))
