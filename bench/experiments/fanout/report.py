"""The fan-out experiment's sections of the report: measured against F(t)^n, slow fractions
against 1-(1-p)^n, hedging, the leaves' cost, and the figures."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.experiments.fanout import plots as fanout_figures
from bench.render import display, plots
from bench.render.document import Block, Bullets, Figure, Heading, Paragraph, Table
from bench.results.model import Estimate, Ratio
from bench.results.reader import RunData

SPECTRUM_VARIANT = "tail"


def fanout_report(run: RunData, result: Mapping[str, Any], figures_dir: Path) -> list[Block]:
    settings = result.get("settings", {})
    tail = settings.get("tail", {})
    slow = settings.get("slow_replica", {})
    blocks: list[Block] = [Heading("Fan-out"), Paragraph(
        f"GET /search/scatter?n= asks n shards of the catalog at once and answers when the "
        f"slowest has. The split placement runs every replica of every shard as a leaf server "
        f"of its own ({settings.get('shards')} shards x {settings.get('replicas')} replicas); the "
        f"monolith calls the same leaves as functions on the same bounded pool. One step per "
        f"trial sends every kind in seeded random rounds at {settings.get('rate')} req/s. "
        f"'tail' injects {tail.get('base_ms')} ms into every leaf call and {tail.get('slow_ms')} ms "
        f"more with probability {tail.get('slow_p')}; 'one slow replica' does that with "
        f"probability {slow.get('slow_p')} on replica 0 of each shard only. Delays are drawn from "
        f"each request's seed, so both placements get the same ones. The prediction for n is "
        f"F(t)^n with F the measured n=1 of the same kind (its q^(1/n) quantile); 'agrees' when "
        f"the 95% bootstrap interval of measured/predicted contains 1. A slow fraction is the "
        f"share of requests over the slow delay, against 1-(1-p)^n, with a 99% binomial interval.")]
    per = result.get("placements", {})
    if not per:
        return blocks + [Paragraph("Fan-out was not measured in this run.")]
    rows, slow_rows, notes = [], [], []
    for placement, e in per.items():
        if not e.get("kinds"):
            notes.append(f"{placement}: no valid trial ({'; '.join(e.get('invalid', [])) or '-'})")
            continue
        for name, k in e["kinds"].items():
            cells = [placement, name]
            for key in ("p50", "p90", "p99", "p99.9"):
                pred = k.get("predicted", {}).get(key, {})
                cells.append(display.estimate(Estimate.from_json(k.get(key)), unit=""))
                cells.append(_predicted_cell(pred))
            rows.append(cells)
            sf = k.get("slow_fraction")
            if sf and sf.get("measured") is not None:
                lo, hi = sf["ci99"]
                slow_rows.append([placement, name, f"{sf['measured']:.3f} ({lo:.3f}-{hi:.3f})",
                                  f"{sf['expected']:.3f}", display.number(sf["samples"]),
                                  "agrees" if sf["agrees"] else "DISAGREES"])
            if k.get("why"):
                notes.append(f"{placement}, {name}: disagrees on {', '.join(k['disagrees_on'])}: "
                             + "; ".join(k["why"]))
    blocks.append(Table(["placement", "kind", "p50 µs", "F(t)^n p50", "p90 µs", "F(t)^n p90",
                         "p99 µs", "F(t)^n p99", "p99.9 µs", "F(t)^n p99.9"], rows, "llrrrrrrrr"))
    if slow_rows:
        blocks.append(Table(["placement", "kind", "slow fraction (99% CI)", "1-(1-p)^n", "requests",
                             "verdict"], slow_rows, "llrrrl"))
    if notes:
        blocks.append(Bullets(notes))
    for pair, by_kind in result.get("ratios", {}).items():
        if by_kind:
            blocks.append(Table(["kind", f"p50 {pair}, paired by trial", "verdict"],
                                [[name, display.ratio(Ratio.from_json(r)),
                                  display.ratio_verdict(Ratio.from_json(r))]
                                 for name, r in by_kind.items()], "lrl"))
    hedge_rows = []
    for placement, e in per.items():
        h = e.get("hedging")
        if not h:
            continue
        for key in ("p99", "p99.9"):
            doc = h.get(key, {})
            hedge_rows.append([placement, key, display.estimate(Estimate.from_json(doc.get("unhedged"))),
                               display.estimate(Estimate.from_json(doc.get("hedged"))),
                               display.ratio(Ratio.from_json(doc["reduction"])) if doc.get("reduction") else "n/a",
                               display.percent(h.get("extra_requests")),
                               display.number(e.get("hedge_ms"), 2)])
    if hedge_rows:
        blocks.append(Heading("Hedged requests", 3))
        blocks.append(Table(["placement", "percentile", "unhedged µs", "hedged µs",
                             "unhedged / hedged", "extra leaf calls", "hedge after (ms)"],
                            hedge_rows, "llrrrrr"))
        why = [f"{p}: {e['hedging']['why']}" for p, e in per.items()
               if (e.get("hedging") or {}).get("why")]
        if why:
            blocks.append(Bullets(why))
    costs = [[p, display.number(e["leaves"].get("servers")),
              display.number(e["leaves"].get("startup_cpu_s_mean"), 3),
              display.number(e["leaves"].get("pss_mib_mean"), 1),
              display.number(e["leaves"].get("pss_mib_total"), 0),
              display.percent(e.get("system_cpu_busy"))]
             for p, e in per.items() if e.get("leaves", {}).get("servers")]
    if costs:
        blocks.append(Table(["placement", "leaf servers", "start-up CPU s per leaf",
                             "PSS MiB per leaf", "PSS MiB, all leaves", "system CPU busy"],
                            costs, "lrrrrr"))
    frame = fanout_figures.fanout_frame(result)
    figure = fanout_figures.percentiles_vs_n(frame, figures_dir / "fanout-percentiles.png")
    if figure:
        blocks.append(Figure(str(figure), "p50/p99/p99.9 against n, measured and F(t)^n"))
    for placement in per:
        steps = run.steps_of("fanout", placement, valid_only=True)
        names = [n for n, k in per[placement].get("kinds", {}).items()
                 if k["variant"] == SPECTRUM_VARIANT]
        spectra = {name: run.histogram_of(steps, [name]) for name in names}
        figure = plots.percentile_spectrum(spectra, f"fan-out with the leaf tail, {placement}",
                                           figures_dir / f"fanout-spectrum-{placement}.png")
        if figure:
            blocks.append(Figure(str(figure), f"percentile spectrum per n, {placement}"))
    figure = fanout_figures.hedging_bars(result, figures_dir / "fanout-hedging.png")
    if figure:
        blocks.append(Figure(str(figure), "hedging: p99 and p99.9 before and after"))
    return blocks


def _predicted_cell(pred: Mapping[str, Any]) -> str:
    if not pred or pred.get("value") is None:
        return "-"
    text = display.number(pred["value"])
    if not pred.get("supported"):
        return text + " (few samples)"
    return text + (" ok" if pred.get("agrees") else " DIFFERS")
