"""``seambench predict``: price a topology from a run that measured the monolith and one hop.

Reads the run (bench/experiments/predict/inputs.py), prices each topology (bench/experiments/predict/model.py) with
the jackknife's interval over the run's trials, and, with ``--against``, sets each beside
what another run (or the same one) measured for a placement of the same name. A bad
argument, topology or run is one line and exit 2 (bench/exitcodes.py)."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bench.exitcodes import UNUSABLE
from bench.experiments.predict.inputs import (Measured, PredictError, RunInputs, measured,
                                              read_inputs, summary_of)
from bench.experiments.predict.model import GATEWAY, NetworkModel, Prediction, predict
from bench.results.model import Estimate
from bench.results.reader import load_run
from bench.results.stats import over_trials
from shop.topology import Topology, TopologyError, load_topology

AGREES_WITHIN = 0.15  # a prediction within 15% of the measured value agrees with it


@dataclass(frozen=True)
class Priced:
    """One topology's prediction: figures with the jackknife's interval over trials."""

    topology: Topology
    point: Prediction
    p50_us: Estimate
    cpu_ms: Estimate
    memory_mib: Estimate


def price(topology: Topology, inputs: RunInputs, network: NetworkModel) -> Priced:
    """``topology`` priced from ``inputs``. Raises TopologyError for a topology that lacks a
    component the call graph names."""
    try:
        point = predict(topology, inputs.full, inputs.graph, network, inputs.baseline_servers)
        others = [predict(topology, c, inputs.graph, network, inputs.baseline_servers)
                  for c in inputs.left_out]
    except StopIteration:
        raise TopologyError(f"topology {topology.name!r} does not host every component of the "
                            f"shop (auth, billing, search, notify)") from None
    return Priced(topology, point,
                  over_trials(point.p50_us, [o.p50_us for o in others]),
                  over_trials(point.cpu_ms, [o.cpu_ms for o in others]),
                  over_trials(point.memory_mib, [o.memory_mib for o in others]))


def verdict(predicted: Estimate, actual: Estimate) -> str:
    """"within 15%", "inside its interval" (the predicted value inside the measured
    interval), or "misses"."""
    if predicted.value is None:
        return "not predicted"
    if not actual.value:
        return "not measured"
    if abs(predicted.value - actual.value) <= AGREES_WITHIN * actual.value:
        return "within 15%"
    if actual.ci95 is not None and actual.low <= predicted.value <= actual.high:
        return "inside its interval"
    return "misses"


def _fmt(e: Estimate, scale: float = 1.0, unit: str = "") -> str:
    if e.value is None:
        return "-"
    text = f"{e.value * scale:.2f}{unit}"
    if e.ci95 is not None:
        text += f" ({e.low * scale:.2f}-{e.high * scale:.2f})"
    return text


def describe(priced: Priced, inputs: RunInputs, against: Measured | None,
             mono: Measured | None) -> list[str]:
    """The lines ``seambench predict`` prints for one topology."""
    p = priced.point
    lines = [f"{priced.topology.name}: at {inputs.rate:g} req/s",
             f"  journey p50   {_fmt(priced.p50_us, 1e-3, ' ms')}",
             f"  CPU/request   {_fmt(priced.cpu_ms, 1, ' ms')}",
             f"  memory (PSS)  {_fmt(priced.memory_mib, 1, ' MiB')}",
             f"  notification lag p50  "
             f"{'-' if p.lag_p50_us is None else f'{p.lag_p50_us / 1000:.2f} ms'}",
             f"  its cores busy {p.busy:.0%} at this rate (the seam's work {p.stretch:.2f}x as "
             f"long as alone)" if p.busy < 1 else
             f"  its cores busy {p.busy:.0%}: it cannot keep this rate (no p50)",
             "  what it adds per request kind, alone (share of requests: gateway + hops + network "
             "= added µs; HTTP hops crossed, events among them):"]
    for kind, shift in p.shifts.items():
        lines.append(f"    {kind:<9} {p.mix[kind]:5.0%}: {shift.gateway_us:7.0f} + "
                     f"{shift.hops_us:7.0f} + {shift.network_us:6.0f} = {shift.total_us:7.0f} µs; "
                     f"{shift.crossings:.2f} hops ({shift.event_crossings:.2f} events)")
    if against is not None:
        for what, pred, act, scale, unit in (
                ("p50", priced.p50_us, against.p50_us, 1e-3, " ms"),
                ("CPU", priced.cpu_ms, against.cpu_ms, 1, " ms"),
                ("memory", priced.memory_mib, against.memory_mib, 1, " MiB")):
            said = verdict(pred, act)
            quotient = (f"{pred.value / act.value:.2f}x" if pred.value is not None and act.value
                        else "-")
            line = f"  measured {what:<7} {_fmt(act, scale, unit)}: predicted/measured {quotient}, {said}"
            if said == "misses" and mono is not None and mono.p50_us.value:
                line += "; " + why_missed(what, pred, act, mono)
                if what == "p50":
                    line += (f"; CPU predicted {priced.cpu_ms.value / against.cpu_ms.value:.2f}x "
                             f"the measured, so the cores' load (and the seam's stretch) "
                             f"{'over' if priced.cpu_ms.value > against.cpu_ms.value else 'under'}"
                             f"stated")
            lines.append(line)
    return lines


def why_missed(what: str, pred: Estimate, actual: Estimate, mono: Measured) -> str:
    """Where a miss comes from, in what the two runs measured: the seam the model adds over
    the monolith against the seam the measurement found."""
    base = {"p50": mono.p50_us, "CPU": mono.cpu_ms, "memory": mono.memory_mib}[what]
    if base.value is None:
        return "the monolith was not measured beside it"
    model, found = pred.value - base.value, actual.value - base.value
    return (f"over the monolith measured beside it the model adds {model:.4g}, the "
            f"measurement {found:.4g} ({found / model:.2f}x the model's)" if model else
            f"the model adds nothing over the monolith; the measurement {found:.4g}")


def parse_edge_network(values: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """``CALLER->CALLEE=RTT_MS[,JITTER_MS]`` options. Raises click.BadParameter."""
    out = {}
    for value in values:
        edge, _, numbers = value.partition("=")
        try:
            parts = [float(x) for x in numbers.split(",")]
        except ValueError:
            parts = []
        if "->" not in edge or not 1 <= len(parts) <= 2 or not all(
                math.isfinite(x) and x >= 0 for x in parts):
            raise click.BadParameter(f"{value!r}: expected CALLER->CALLEE=RTT_MS[,JITTER_MS] "
                                     f"with numbers >= 0", param_hint="--edge-network")
        out[edge] = (parts[0], parts[1] if len(parts) > 1 else 0.0)
    return out


def _check_edges(network: NetworkModel, chosen: list[Topology]) -> None:
    """Raise TopologyError for an --edge-network key whose ends are no process (or the
    gateway) of any topology priced: it would be silently ignored."""
    names = {GATEWAY} | {p for t in chosen for p in t.processes}
    for key in network.edges:
        caller, _, callee = key.partition("->")
        if caller not in names or callee not in names:
            raise TopologyError(f"--edge-network {key!r}: name processes (or gateway) of the "
                                f"topologies priced: {', '.join(sorted(names))}")


@click.command("predict")
@click.option("--from", "run_dir", required=True, type=click.Path(file_okay=False),
              help="a run that measured the monolith and a placement with one component per "
                   "process, with the hops and journey experiments (the default run does)")
@click.option("--topology", "topologies", multiple=True, required=True,
              help="a topology to price: a built-in name or a TOML file (repeatable)")
@click.option("--rate", type=float, default=None,
              help="the journey rate (req/s) to predict at; default: the run's headline rate")
@click.option("--rtt-ms", type=click.FloatRange(0, 10_000), default=0.0,
              help="network model: round trip added to every crossing, ms (e.g. 0.3)")
@click.option("--jitter-ms", type=click.FloatRange(0, 10_000), default=0.0,
              help="network model: mean jitter added to every crossing, ms")
@click.option("--edge-network", multiple=True, metavar="CALLER->CALLEE=RTT_MS[,JITTER_MS]",
              help="network model for one edge between processes (or the gateway) of the "
                   "topologies priced, over --rtt-ms")
@click.option("--against", "against_dir", type=click.Path(file_okay=False), default=None,
              help="a run that measured placements of the same names: print both, with the "
                   "verdict (within 15%, inside its interval, or misses)")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="also write the predictions (and comparisons) to this JSON file")
def predict_command(run_dir: str, topologies: tuple[str, ...], rate: float | None,
                    rtt_ms: float, jitter_ms: float, edge_network: tuple[str, ...],
                    against_dir: str | None, json_out: str | None) -> None:
    """Predict a topology's journey p50, CPU per request, memory and notification lag from
    one run, with intervals, without building it (docs/predict.md)."""
    network = NetworkModel(rtt_ms, jitter_ms, parse_edge_network(edge_network))
    try:
        inputs = read_inputs(run_dir, rate)
        chosen = [load_topology(t) for t in topologies]
        against = summary_of(load_run(against_dir)) if against_dir else None
        _check_edges(network, chosen)
        priced = [price(t, inputs, network) for t in chosen]
    except (PredictError, TopologyError, FileNotFoundError) as exc:
        click.echo(f"seambench predict: {exc}", err=True)
        sys.exit(UNUSABLE)
    click.echo(f"from run {inputs.run_id} at {inputs.rate:g} req/s ({inputs.rung}): the monolith "
               f"is {inputs.monolith!r}, hop costs and the call graph from {inputs.split!r}; "
               f"one hop {inputs.full.hop_us:.0f} µs and {inputs.full.hop_cpu_ms:.2f} CPU-ms, "
               f"the gateway {inputs.full.gateway_us:.0f} µs; intervals: jackknife over "
               f"{len(inputs.left_out)} trials")
    document: dict[str, Any] = {"run": inputs.run_id, "rate": inputs.rate, "predictions": {}}
    for p in priced:
        actual = mono = None
        if against is not None:
            actual = measured(against, p.topology.name, inputs.rate)
            mono = measured(against, inputs.monolith, inputs.rate)
        for line in describe(p, inputs, actual, mono):
            click.echo(line)
        document["predictions"][p.topology.name] = _to_json(p, actual)
    if json_out:
        Path(json_out).write_text(json.dumps(document, indent=1) + "\n")


def _to_json(p: Priced, actual: Measured | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"p50_us": p.p50_us.to_json(), "cpu_ms_per_request": p.cpu_ms.to_json(),
                           "memory_mib": p.memory_mib.to_json(), "lag_p50_us": p.point.lag_p50_us,
                           "added_us_per_kind": {k: round(s.total_us, 1)
                                                 for k, s in p.point.shifts.items()}}
    if actual is not None:
        doc["measured"] = {"p50_us": actual.p50_us.to_json(), "cpu_ms_per_request":
                           actual.cpu_ms.to_json(), "memory_mib": actual.memory_mib.to_json(),
                           "lag_p50_us": actual.lag_p50_us}
        doc["verdict"] = {"p50": verdict(p.p50_us, actual.p50_us),
                          "cpu_ms_per_request": verdict(p.cpu_ms, actual.cpu_ms),
                          "memory_mib": verdict(p.memory_mib, actual.memory_mib)}
    return doc
