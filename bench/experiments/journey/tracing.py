"""The journey's traced placements (``run --trace``): what tracing costs, and where each
millisecond of a request goes (journey/attribution.py), in the result and the report.

A traced placement NAME-traced ran beside NAME, paired by trial; its spans are in the run's
traces/NAME-traced/. Attribution reads the spans of the counted trials' windows at the
headline rate (else the lowest) and sets the median request's parts, plus the way in from
the generator (the least gap of any hop traced in the run), against the p50 the generator
measured: they should agree within ``ADDS_UP_WITHIN``.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.experiments.journey.attribution import PARTS, attribute, waterfall_spans
from bench.render import display
from bench.render.document import Block, Figure, Heading, Paragraph, Table
from bench.results.model import Estimate
from bench.results.reader import RunData
from bench.results.store import TRACES_DIR
from shop.tracing import read_spans

ADDS_UP_WITHIN = 0.10  # the median request's parts against the measured p50
JOURNEY = "journey"


def traced_analysis(run: RunData, per: Mapping[str, Mapping[str, Any]], label: str
                    ) -> dict[str, Any]:
    """placement -> its attribution at rung ``label`` (per: the journey's placements)."""
    out: dict[str, Any] = {}
    for placement in run.config.get("traced", {}):
        entry = per.get(placement, {}).get(label)
        if not entry:
            continue
        trials = set(entry.get("counted_trials", []))
        steps = [s for s in run.steps_of(JOURNEY, placement, label, valid_only=True)
                 if s.key.trial in trials]
        windows = [(float(s.extra["window_start_s"]), float(s.extra["window_end_s"]))
                   for s in steps if "window_start_s" in s.extra]
        doc = attribute(read_spans(run.dir / TRACES_DIR / placement), windows, None)
        doc["rung"], doc["sustained"] = label, bool(entry.get("sustained"))
        doc["measured_p50_us"] = Estimate.from_json(entry.get("latency", {}).get("p50")).value
        out[placement] = doc
    # The way in from the generator is the same loopback and gunicorn path as a hop's: set
    # at the least send-to-answer gap of any hop traced in the run (nothing queued).
    gaps = [e["network_us"] for doc in out.values() for e in doc["edges"].values()
            if e.get("network_us") is not None]
    edge = min(gaps) if gaps else None
    for doc in out.values():
        median = (doc.get("all") or {}).get("median")
        with_edge = median["total_us"] + edge if median and edge is not None else None
        measured = doc["measured_p50_us"]
        doc.update(edge_floor_us=edge, median_with_edge_us=with_edge,
                   adds_up=None if with_edge is None or not measured else
                   {"ratio": with_edge / measured,
                    "within": abs(with_edge / measured - 1) <= ADDS_UP_WITHIN})
    return out


def tracing_report(run: RunData, result: Mapping[str, Any], figures_dir: Path) -> list[Block]:
    traced = result.get("tracing")
    if not traced:
        return []
    label = next(iter(traced.values()))["rung"]
    blocks: list[Block] = [Heading("Where the milliseconds go (traced placements)", 3), Paragraph(
        "Each placement ran again traced (OpenTelemetry spans on every edge request and hop, "
        "the traceparent passed along), as NAME-traced, paired by trial with NAME. What tracing "
        "costs is the ratio NAME-traced/NAME in the ratios above. A traced request's root "
        "span (at the gateway, or the monolith) splits exactly into: edge code (its own "
        "time), serialization (JSON encode and parse, both ends), network (per hop, the least "
        "send-to-answer gap seen on that edge), queueing (the rest of the gap) and callee work "
        "(the callees' own time). Before the root the request crossed from the generator to "
        "the edge, which no span sees: set at the least gap of any hop traced in the run (the "
        "same loopback and gunicorn path, nothing queued), so queueing at the edge is left "
        f"out. The median request's parts plus that should come within "
        f"{ADDS_UP_WITHIN:.0%} of the p50 the generator measured. µs, at "
        f"{label.removeprefix('r')} req/s.")]
    rows = []
    for placement, doc in traced.items():
        for kind, entry in {**doc["kinds"], "all kinds": doc["all"]}.items():
            if not entry:
                continue
            for which in ("median", "p99"):
                req = entry.get(which)
                if req:
                    rows.append([placement, kind, which, display.number(req["total_us"]),
                                 *(display.number(req["parts_us"][p]) for p in PARTS),
                                 str(req["hops"])])
    blocks.append(Table(["placement", "kind", "request", "total", *PARTS, "hops"], rows,
                        "lllrrrrrrr"))
    checks = []
    for placement, doc in traced.items():
        adds = doc.get("adds_up")
        checks.append([placement + ("" if doc.get("sustained", True) else " (not sustained)"),
                       display.number(doc["requests"]),
                       display.number((doc["all"] or {}).get("median", {}).get("total_us")),
                       display.number(doc.get("edge_floor_us")),
                       display.number(doc.get("measured_p50_us")),
                       f"{adds['ratio']:.3f}" if adds else "-",
                       ("yes" if adds["within"] else "no") if adds else
                       "not checked (no floor or no p50)"])
    blocks.append(Paragraph("Does the attribution add up? The median traced request (all kinds) "
                            "plus the edge round trip, against the measured p50:"))
    blocks.append(Table(["placement", "traced requests", "median root µs", "edge round trip µs",
                         "measured p50 µs", "ratio", f"within {ADDS_UP_WITHIN:.0%}"], checks,
                        "lrrrrrl"))
    edge_rows = [[placement, edge, f"{e['calls_per_request']:.2f}", display.number(e["network_us"]),
                  display.number(e["mean_queueing_us"])]
                 for placement, doc in traced.items() for edge, e in doc["edges"].items()]
    if edge_rows:
        blocks.append(Paragraph("Per edge: calls per journey request, the network path (least "
                                "gap) and the mean queueing on top of it, µs."))
        blocks.append(Table(["placement", "edge", "calls per request", "network µs",
                             "mean queueing µs"], edge_rows, "llrrr"))
    blocks += _seam_table(traced)
    for placement, doc in traced.items():
        figure = _waterfall(run, placement, doc, figures_dir / f"waterfall-{placement}.png", label)
        if figure:
            blocks.append(Figure(str(figure), f"the median and the p99 request of {placement}"))
    return blocks


def _seam_table(traced: Mapping[str, Any]) -> list[Block]:
    """The mean request's parts per traced placement, and each over the first's."""
    names = [p for p, d in traced.items() if d.get("all")]
    if len(names) < 2:
        return []
    first = names[0]
    mean = {p: traced[p]["all"]["mean_parts_us"] for p in names}
    rows = [[part, *(display.number(mean[p][part]) for p in names),
             *(f"{mean[p][part] - mean[first][part]:+.0f}" for p in names[1:])] for part in PARTS]
    rows.append(["total", *(display.number(sum(mean[p].values())) for p in names),
                 *(f"{sum(mean[p].values()) - sum(mean[first].values()):+.0f}" for p in names[1:])])
    return [Paragraph(f"Where the extra milliseconds go: the mean traced request's parts (µs), "
                      f"and each placement's over {first}'s."),
            Table(["part", *names, *(f"{p} - {first}" for p in names[1:])], rows,
                  "l" + "r" * (2 * len(names) - 1))]


def _waterfall(run: RunData, placement: str, doc: Mapping[str, Any], out: Path,
               label: str) -> Path | None:
    everything = doc.get("all") or {}
    chosen = [(which, everything[which]) for which in ("median", "p99") if everything.get(which)]
    if not chosen:
        return None
    from bench.experiments.journey.plots import waterfall
    spans = read_spans(run.dir / TRACES_DIR / placement)
    return waterfall({f"{which} request ({r['total_us'] / 1000:.2f} ms)":
                      waterfall_spans(spans, r["trace_id"]) for which, r in chosen},
                     f"{placement} at {label.removeprefix('r')} req/s", out)
