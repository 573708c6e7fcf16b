"""The fan-out experiment's sections of the report: measured against F(t)^n, slow fractions
against 1-(1-p)^n, hedging, the leaves' cost, and the figures."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.experiments.fanout import plots as fanout_figures
from bench.experiments.fanout.analysis import THRESHOLD_CLEARANCE
from bench.experiments.fanout.theory import MARGIN, verdict_text
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
        f"each request's seed, so both placements get the same ones. The scatterer times each "
        f"shard it asks; F(t)^n, the slowest of n independent leaves, is predicted from those "
        f"times (F's q^(1/n) quantile) and set against the slowest leaf measured (table below). "
        f"A slow fraction is the share of requests over the slow delay, against 1-(1-p)^n, "
        f"with a 99% binomial interval.")]
    per = result.get("placements", {})
    if not per:
        return blocks + [Paragraph("Fan-out was not measured in this run.")]
    rows, leaf_rows, slow_rows, notes = [], [], [], []
    for placement, e in per.items():
        if not e.get("kinds"):
            notes.append(f"{placement}: no valid trial ({'; '.join(e.get('invalid', [])) or '-'})")
            continue
        for name, k in e["kinds"].items():
            cells = [placement, name]
            for key in ("p50", "p90", "p99", "p99.9"):
                pred = k.get("predicted", {}).get(key, {})
                cells.append(display.estimate(Estimate.from_json(k.get(key)), unit=""))
                # a prediction for the slowest leaf is not one for the whole request
                cells.append(_predicted_cell(pred) if pred.get("basis") != "leaf" else "-")
            rows.append(cells)
            leaf_rows.extend(_leaf_rows(placement, name, k))
            sf = k.get("slow_fraction")
            if sf and sf.get("measured") is not None:
                slow_rows.append([placement, name, *slow_cells(sf)])
            if k.get("why"):
                what = (f"disagrees on {', '.join(k['disagrees_on'])}" if k.get("disagrees_on")
                        else "no verdict on the slow fraction")
                notes.append(f"{placement}, {name}: {what}: " + "; ".join(k["why"]))
    blocks.append(Table(["placement", "kind", "p50 µs", "F(t)^n p50", "p90 µs", "F(t)^n p90",
                         "p99 µs", "F(t)^n p99", "p99.9 µs", "F(t)^n p99.9"], rows, "llrrrrrrrr"))
    if leaf_rows:
        low, high = MARGIN
        blocks.append(Paragraph(
            f"The slowest of n leaves, as the scatterer timed each shard from asking to answer, "
            f"against F(t)^n with F every leaf call of the same requests (n per request). "
            f"'agrees' when the 95% interval of measured/predicted lies within {low:g}-{high:g}x, "
            f"'differs' when it lies wholly outside, else 'cannot tell' with about how many "
            f"requests would decide; none under the 10/(1-q) rule."))
        blocks.append(Table(["placement", "kind", "percentile", "slowest leaf µs (95% CI)",
                             "F(t)^n µs", "measured / predicted", "verdict"], leaf_rows,
                            "lllrrrl"))
    if slow_rows:
        blocks.append(Paragraph(
            "Slow requests: the share over the injected delay (a request that drew a slow leaf "
            "takes at least that), beside the share whose seeds drew one (the injection "
            "itself) and 1-(1-p)^n. The measured share tests the theory only where the requests "
            "that drew no slow leaf stay well under the threshold (column 'drew none'): "
            f"at least {THRESHOLD_CLEARANCE:g}x under it, else no verdict."))
        blocks.append(Table(["placement", "kind", "over the threshold (99% CI)", "drew a slow leaf",
                             "1-(1-p)^n", "drew none: latency", "requests", "verdict"],
                            slow_rows, "llrrrrrl"))
    waits = [interference_text(placement, e["interference"]) for placement, e in per.items()
             if e.get("interference")]
    if waits:
        blocks.append(Paragraph(
            "How the kinds of one step disturb each other: every request of a worker shares one "
            "bounded pool of leaf-call threads, so a request's leaf calls may wait for a thread "
            "while a wider fan-out holds them. The wait is timed for every leaf call; F(t)^n "
            "takes F from the same requests' leaves, so this wait is inside both sides."))
        blocks.append(Bullets(waits))
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
                               _delay_text(e.get("hedge_ms"), h.get("hedge_delay_ms"))])
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
        blocks.append(Figure(str(figure), "p50/p90/p99/p99.9 against n, measured and F(t)^n"))
    for placement in per:
        steps = run.steps_of("fanout", placement, valid_only=True)
        names = [n for n, k in per[placement].get("kinds", {}).items()
                 if k["variant"] == SPECTRUM_VARIANT]
        spectra = {name: run.histogram_of(steps, [name]) for name in names}
        # the placement's colour, darker as n grows: n is the series here, not the placement
        colours = dict(zip(names, plots.shades(plots.placement_colour(placement), len(names))))
        figure = plots.percentile_spectrum(
            spectra, f"Fan-out{plots.rate_text(settings.get('rate'))} with the leaf tail, "
                     f"{placement}:\nlatency by percentile, one line per n (valid trials)",
            figures_dir / f"fanout-spectrum-{placement}.png", colours)
        if figure:
            blocks.append(Figure(str(figure), f"percentile spectrum per n, {placement}"))
    figure = fanout_figures.hedging_bars(result, figures_dir / "fanout-hedging.png")
    if figure:
        blocks.append(Figure(str(figure), "hedging: p99 and p99.9 before and after"))
    return blocks


def _leaf_rows(placement: str, name: str, kind: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    if kind.get("n") == 1:  # the slowest of one leaf is that leaf: agrees by construction
        return rows
    for key, pred in kind.get("predicted", {}).items():
        if pred.get("basis") != "leaf" or key == "p99.9":
            continue
        ci = pred.get("measured_over_predicted")
        ratio = (f"{pred['ratio']:.2f}x" if pred.get("ratio") else "-") + (
            f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci and pred.get("supported") else "")
        rows.append([placement, name, key,
                     display.estimate(Estimate.from_json(pred.get("measured")), unit=""),
                     display.number(pred.get("value")), ratio, verdict_text(pred)])
    return rows


def _delay_text(fixed_ms: float | None, tracked: Mapping[str, float] | None) -> str:
    """The hedge delay (ms): fixed by the user, or tracked by the scatter through the step."""
    if fixed_ms is not None or not tracked:
        return display.number(fixed_ms, 2)
    return (f"{tracked['p50']:.2f} (tracked to leave 5% of primaries out: "
            f"{tracked['p5']:.2f}-{tracked['p95']:.2f} in 90% of requests)")


def interference_text(placement: str, found: Mapping[str, Any]) -> str:
    narrow = "; ".join(f"{name}: p50 {w['p50'] / 1000:.2f} ms, p99 {w['p99'] / 1000:.2f} ms"
                       for name, w in found["narrow"].items())
    wide = found["widest"]
    return (f"{placement}: the n = 1 requests' leaf calls waited for a pool thread ({narrow}); "
            f"n = {found['widest_n']}'s, p50 {wide['p50'] / 1000:.2f} ms, p99 "
            f"{wide['p99'] / 1000:.2f} ms")


def slow_cells(sf: Mapping[str, Any]) -> list[str]:
    """A slow fraction's cells: measured share, injected share, expected, the undisturbed
    latency against the threshold, requests, verdict."""
    lo, hi = sf["ci99"]
    injected = sf.get("injected")
    undisturbed = sf.get("undisturbed")
    return [f"{sf['measured']:.1%} ({lo:.1%}-{hi:.1%})",
            f"{injected['share']:.1%}" if injected else "-", f"{sf['expected']:.1%}",
            f"{undisturbed['quantile']} {undisturbed['ms']:.1f} ms vs {sf['threshold_ms']:g} ms"
            if undisturbed else "-", display.number(sf["samples"]), slow_verdict(sf)]


def slow_verdict(sf: Mapping[str, Any]) -> str:
    if sf.get("agrees") is None:
        return "no verdict (threshold not clear of plain requests)"
    return "agrees" if sf["agrees"] else "DISAGREES"


def _predicted_cell(pred: Mapping[str, Any]) -> str:
    if not pred or pred.get("value") is None:
        return "-"
    text = display.number(pred["value"])
    if not pred.get("supported"):
        return text + " (few samples)"
    return text + (" ok" if pred.get("agrees") else " DIFFERS")
