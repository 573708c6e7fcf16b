"""The figures' rules, checked on the drawn figures themselves (each figure function is run
with ``save`` wrapped so the test keeps the matplotlib figure it wrote): a spectrum stops at
the sample rule, a placement has one colour in every figure, a point left out is marked with
its own legend entry, an axis spanning a decade is logarithmic, the chaos timeline's columns
share their scales and its fault shading is in the legend, and no figure has matplotlib warn
"No artists with labels found to put in legend"."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from matplotlib.colors import to_hex, to_rgb

from bench.experiments.chaos import analysis as chaos_analysis
from bench.experiments.chaos.experiment import DETAILS
from bench.experiments.fanout import plots as fanout_plots
from bench.experiments.hops import plots as hop_plots
from bench.experiments.journey import plots as journey_plots
from bench.render import plots
from bench.results.model import Quantile

MODULES = (plots, fanout_plots, hop_plots, journey_plots, chaos_analysis)
NO_LABELS = "No artists with labels"


@pytest.fixture
def drawn(monkeypatch) -> list[Any]:
    """Every figure written while the test runs, in order, kept open for inspection."""
    figures: list[Any] = []

    def keep(fig: Any, out_path: str | Path) -> Path:
        figures.append(fig)
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")  # drawn whole, as save() would, but not closed
        return out

    for module in MODULES:
        monkeypatch.setattr(module, "save", keep)
    yield figures
    for fig in figures:
        plots.pyplot().close(fig)


def histogram_of(values_us: list[int]) -> HdrHistogram:
    h = HdrHistogram(1, 60_000_000, 3)
    for v in values_us:
        h.record_value(v)
    return h


def est(value: float | None, samples: int = 5_000, supported: bool = True,
        spread: float = 0.05) -> dict[str, Any]:
    """An estimate as summary.json holds it (µs)."""
    if value is None:
        return {"value": None, "ci95": None}
    doc = {"value": value, "ci95": [value * (1 - spread), value * (1 + spread)], "samples": samples}
    if not supported:
        doc["supported"] = False
    return doc


def foot_marks(ax: Any) -> list[Any]:
    """The marks ``mark_left_out`` drew: marker-only lines in the x-axis' blended transform."""
    return [line for line in ax.get_lines()
            if line.get_linestyle() == "None" and ax.get_xaxis_transform() in
            _branches(line.get_transform())]


def _branches(transform: Any) -> list[Any]:
    out = [transform]
    for attr in ("_a", "_b"):
        if hasattr(transform, attr):
            out += _branches(getattr(transform, attr))
    return out


def legend_texts(fig: Any) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    return [t.get_text() for legend in legends for t in legend.get_texts()]


# --- the sample rule -----------------------------------------------------------------------

def test_the_spectrum_stops_where_the_samples_stop_supporting_the_percentile(tmp_path, drawn):
    thousand = histogram_of(list(range(1_000, 2_000)))  # 1,000 samples: enough for a p99, no more
    ten_thousand = histogram_of(list(range(1_000, 11_000)))
    x, _ = plots.spectrum_points(thousand)
    assert x[-1] <= 100.0 + 1e-9 and x[-1] >= 99.999  # reaches the p99 and stops there
    assert Quantile("end", 100.0 * (1 - 1 / x[-1])).min_samples <= 1_000
    plots.percentile_spectrum({"monolith": thousand, "microservices": ten_thousand}, "t",
                              tmp_path / "s.png")
    ax = drawn[-1].axes[0]
    ends = sorted(float(line.get_xdata()[-1]) for line in ax.get_lines()
                  if len(line.get_xdata()) > 1)
    # 1,000 samples reach the p99 (x = 100), 10,000 the p99.9 (x = 1,000): never past
    assert ends == pytest.approx([100.0, 1_000.0], rel=1e-6)
    assert ends[0] <= 100.0 and ends[1] <= 1_000.0


@pytest.mark.parametrize("count", [10, 19, 20, 137, 999, 1_000, 1_001, 12_345])
def test_every_drawn_point_of_a_spectrum_has_the_samples_its_percentile_needs(count):
    x, values = plots.spectrum_points(histogram_of(list(range(1, count + 1))))
    assert len(x) == len(values) > 0
    for xi in x:
        assert Quantile("q", 100.0 * (1 - 1 / xi)).min_samples <= count


@pytest.mark.parametrize("total", [10, 11, 99, 1_000, 10_007, 123_457, 10**6, 10**8 + 7, 10**9])
def test_the_last_percentile_drawn_is_the_highest_the_rule_allows(total):
    limit = plots.supported_limit(total)
    assert Quantile("q", 100.0 * (1 - 1 / limit)).min_samples <= total
    assert limit == pytest.approx(total / 10, rel=1e-6)  # and no lower than it need be


def test_a_series_under_ten_samples_is_not_drawn_but_named(tmp_path, drawn):
    assert len(plots.spectrum_points(histogram_of([5] * 9))[0]) == 0
    plots.percentile_spectrum({"monolith": histogram_of(list(range(1, 2_001))),
                               "microservices": histogram_of([5] * 9)}, "t", tmp_path / "s.png")
    assert any("microservices" in t and "not drawn" in t for t in legend_texts(drawn[-1]))


# --- one colour per placement --------------------------------------------------------------

def test_a_placement_has_one_colour_in_every_figure(tmp_path, drawn):
    # the baseline second everywhere: a colour by position (C0, C1) would give it orange
    journey = {"microservices": {"60": {"p50": est(9_000), "p99": est(30_000)}},
               "monolith": {"60": {"p50": est(2_000), "p99": est(6_000)}}}
    journey_plots.latency_vs_rate(journey, tmp_path / "j.png")
    hops = {"microservices": {"per_k": {"0": {"p50": est(2_222)}}},
            "monolith": {"per_k": {"0": {"p50": est(1_111)}}}}
    hop_plots.hop_cost(hops, {}, tmp_path / "h.png")
    plots.resources({"microservices": est(7.0), "monolith": est(3.0)},
                    {"microservices": 200.0, "monolith": 50.0}, "r", tmp_path / "r.png")
    journey_fig, hop_fig, resources_fig = drawn
    in_journey = {float(line.get_ydata()[0]): to_hex(line.get_color())
                  for line in journey_fig.axes[0].get_lines() if len(line.get_ydata()) == 1
                  and line.get_marker() in ("o",)}
    in_hops = {round(p.get_height()): to_hex(p.get_facecolor()) for p in hop_fig.axes[0].patches}
    in_memory = {round(p.get_height()): to_hex(p.get_facecolor())
                 for p in resources_fig.axes[1].patches}
    mono, micro = plots.placement_colour("monolith"), plots.placement_colour("microservices")
    assert in_journey[2.0] == in_hops[1_111] == in_memory[50] == mono
    assert in_journey[9.0] == in_hops[2_222] == in_memory[200] == micro != mono


def test_the_shipped_placements_have_distinct_colours_none_of_them_red_or_grey():
    shipped = ["monolith", "microservices", "hybrid", "microservices-fanout", "microservices-pg",
               "microservices-rabbitmq", "microservices-billing-x2", "monolith-pg"]
    colours = [to_hex(plots.placement_colour(p)) for p in shipped]
    assert len(set(colours)) == len(shipped)
    reserved = {to_hex(c) for c in (plots.ERROR_COLOUR, plots.FAULT_COLOUR, plots.NEUTRAL_COLOUR,
                                    plots.REFERENCE_COLOUR)}
    assert not reserved & set(colours)


def test_an_unknown_placement_keeps_its_colour_from_process_to_process():
    code = "from bench.render.plots import placement_colour; print(placement_colour('my-own'))"
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
            for seed in ("1", "2", "3")}
    assert seen == {plots.placement_colour("my-own")}
    assert plots.placement_colour("my-own") in plots.OTHER_COLOURS


# --- left-out points -----------------------------------------------------------------------

def test_left_out_points_are_marked_with_their_own_legend_entry(tmp_path, drawn):
    journey = {"monolith": {"50": {"p50": est(2_000), "p99": est(9_000, 600, supported=False)},
                            "100": {"p50": est(2_500), "p99": est(12_000)},
                            "200": {"p50": est(None), "p99": est(None),
                                    "left_out": "no valid trial at this rate"}}}
    journey_plots.latency_vs_rate(journey, tmp_path / "j.png")
    fig = drawn[-1]
    ax = fig.axes[0]
    marks = {(line.get_marker(), float(x)) for line in foot_marks(ax) for x in line.get_xdata()}
    assert ("^", 50.0) in marks  # the p99 its 600 samples do not support
    assert ("x", 200.0) in marks  # the rung with no valid trial
    texts = legend_texts(fig)
    assert any(t.startswith("not measured") and "too few samples" in t for t in texts)
    assert "not measured: no valid trial at this rate" in texts
    # and nothing is drawn at the unsupported p99's value
    assert all(9.0 not in line.get_ydata() for line in ax.get_lines())


def test_an_unsupported_hedging_percentile_is_marked_not_drawn(tmp_path, drawn):
    result = {"settings": {"rate": 30}, "placements": {"monolith": {"hedging": {
        "n": 8, "p99": {"unhedged": est(50_000), "hedged": est(8_000)},
        "p99.9": {"unhedged": est(54_000, 900, supported=False),
                  "hedged": est(9_000, 900, supported=False)}}}}}
    fanout_plots.hedging_bars(result, tmp_path / "h.png")
    fig = drawn[-1]
    heights = sorted(round(p.get_height()) for p in fig.axes[0].patches)
    assert heights == [8, 50]
    assert len([x for line in foot_marks(fig.axes[0]) for x in line.get_xdata()]) == 2
    assert any("too few samples" in t for t in legend_texts(fig))


# --- scales, titles ------------------------------------------------------------------------

def test_latency_spanning_a_decade_is_on_a_log_axis(tmp_path, drawn):
    wide = {"monolith": {"50": {"p50": est(10_000), "p99": est(40_000)},
                         "100": {"p50": est(20_000), "p99": est(300_000)}}}
    narrow = {"monolith": {"50": {"p50": est(2_000), "p99": est(4_000)},
                           "100": {"p50": est(2_500), "p99": est(5_000)}}}
    journey_plots.latency_vs_rate(wide, tmp_path / "w.png")
    journey_plots.latency_vs_rate(narrow, tmp_path / "n.png")
    assert drawn[0].axes[0].get_yscale() == "log"
    assert drawn[1].axes[0].get_yscale() == "linear"
    for fig in drawn:
        ax = fig.axes[0]
        assert "(ms)" in ax.get_ylabel() and "(req/s)" in ax.get_xlabel()
        assert "monolith" in ax.get_title()


def test_the_hop_figure_says_why_the_monolith_may_sit_under_the_http_floor(tmp_path, drawn):
    hops = {"monolith": {"per_k": {"0": {"p50": est(1_000)}, "1": {"p50": est(1_010)}}},
            "microservices": {"per_k": {"0": {"p50": est(2_000)}, "1": {"p50": est(3_400)}}}}
    floors = {"tcp": {"p50": est(290)}, "http": {"p50": est(1_500)}}
    hop_plots.hop_cost(hops, floors, tmp_path / "h.png",
                       {"monolith": [0, 0], "microservices": [1, 2]}, rate=50)
    fig = drawn[-1]
    texts = legend_texts(fig)
    assert any(t.startswith("monolith") and "no HTTP hop" in t for t in texts)
    assert any(t.startswith("raw HTTP") for t in texts)
    assert "50 req/s" in fig.axes[0].get_title() and "(µs)" in fig.axes[0].get_ylabel()


def test_the_fanout_figure_has_a_title_a_legend_and_the_placement_colours(tmp_path, drawn):
    frame = fanout_plots.fanout_frame(fanout_result())
    fanout_plots.percentiles_vs_n(frame, tmp_path / "f.png")
    fig = drawn[-1]
    assert "40 req/s" in fig._suptitle.get_text() and "monolith vs microservices" in fig._suptitle.get_text()
    assert fig.legends and len(legend_texts(fig)) >= 5
    for ax, placement in zip(fig.axes, ("monolith", "microservices")):
        hue = np.array(plots.shades(plots.placement_colour(placement), len(fanout_plots.KEYS)))
        for line in ax.get_lines():
            if len(line.get_xdata()):
                colour = np.array(to_rgb(line.get_color()))
                assert np.min(np.abs(hue - colour).sum(axis=1)) < 1e-6, (placement, colour)


def fanout_result(supported: bool = True) -> dict[str, Any]:
    """A fan-out result of two placements at n = 1, 4 (µs), leaf basis."""
    kinds = {}
    for n in (1, 4):
        kind: dict[str, Any] = {"n": n, "variant": "plain", "predicted": {}}
        for i, key in enumerate(("p50", "p90", "p99", "p99.9")):
            measured = est(1_000.0 * n * (i + 1), 300, supported=supported and key != "p99.9")
            kind["predicted"][key] = {"basis": "leaf", "value": 1_000.0 * n * (i + 1.1),
                                      "supported": True, "measured": measured}
        kinds[f"n={n}"] = kind
    return {"settings": {"rate": 40}, "placements": {"monolith": {"kinds": kinds},
                                                     "microservices": {"kinds": kinds}}}


# --- no "No artists with labels" -----------------------------------------------------------

def test_no_figure_has_matplotlib_warn_of_a_legend_without_labels(tmp_path, drawn, caplog):
    """Every figure drawn from thin data (a smoke run's: most percentiles unsupported)."""
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = fanout_plots.fanout_frame(fanout_result(supported=False))
        fanout_plots.percentiles_vs_n(frame, tmp_path / "f.png")
        fanout_plots.percentiles_vs_n(fanout_plots.fanout_frame(fanout_result()), tmp_path / "g.png")
        fanout_plots.hedging_bars({"placements": {"monolith": {"hedging": {
            "n": 4, "p99": {"unhedged": est(5e4, 18, False), "hedged": est(8e3, 18, False)},
            "p99.9": {}}}}}, tmp_path / "h.png")
        hop_plots.chain_p99({"placements": {"monolith": {"per_k": {
            "0": {"p50": est(1_000), "p99": est(5_000, 200, False)}}}}}, tmp_path / "c.png")
        hop_plots.hop_cost({"monolith": {"per_k": {"0": {"p50": est(1_000)}}}}, {},
                           tmp_path / "k.png")
        journey_plots.latency_vs_rate({"monolith": {"30": {"p50": est(3_000),
                                                           "p99": est(1e4, 96, False)}}},
                                      tmp_path / "j.png", 50.0)
        plots.notification_lag({"monolith": {"count": 14, "p50": est(100, 14, False),
                                             "p99": est(100, 14, False),
                                             "p99.9": est(100, 14, False), "max": 190}},
                               "lag", tmp_path / "l.png")
        plots.resources({"monolith": est(3.0)}, {"monolith": None}, "r", tmp_path / "r.png")
        plots.percentile_spectrum({"n=1": histogram_of([5] * 17)}, "s", tmp_path / "s.png")
        chaos_figure(tmp_path)
    assert len(drawn) == 10
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [s for s in said if NO_LABELS in s], said
    for fig in drawn:  # and every figure has a legend
        assert legend_texts(fig), fig


# --- the chaos timeline --------------------------------------------------------------------

def chaos_figure(tmp_path: Path) -> Path | None:
    """The timeline of a synthetic chaos step per placement: 30 ops/s for 20 s, a crash from
    6 s to 8 s that fails everything in the monolith and a fifth of the microservices' ops;
    the microservices' latency ten times the monolith's, so separate scales would hide it."""
    steps = []
    for placement, latency_s, failing in (("monolith", 0.002, 1.0), ("microservices", 0.02, 0.2)):
        raw = tmp_path / "raw" / placement
        raw.mkdir(parents=True, exist_ok=True)
        ops = []
        for i in range(600):
            t = 1000.0 + i / 30
            down = 1006.0 <= t < 1008.0 and (i % int(1 / failing) == 0)
            ops.append({"t": t, "done": t + latency_s * (1 + (i % 7) / 7),
                        "outcome": "error" if down else "ok", "op": "search"})
        (raw / "ops-0.jsonl").write_text("\n".join(json.dumps(op) for op in ops))
        (raw / DETAILS).write_text(json.dumps({"faults": [
            {"start": 1006.0, "end": 1007.5, "back": 1008.0, "applied": True}]}))
        steps.append(SimpleNamespace(key=SimpleNamespace(trial=0, placement=placement),
                                     raw_dir=Path("raw") / placement))
    run = SimpleNamespace(dir=tmp_path, steps_of=lambda *a, **k: steps[::-1],
                          placements=["monolith", "microservices"],
                          settings=lambda name: {"rate": 30})
    return chaos_analysis.timeline_figure(run, "crash-billing", tmp_path / "chaos.png")


def test_the_chaos_timeline_shares_its_scales_and_has_the_faults_in_its_legend(tmp_path, drawn):
    assert chaos_figure(tmp_path)
    fig = drawn[-1]
    top_left, top_right, bottom_left, bottom_right = fig.axes
    assert bottom_left.get_ylim() == bottom_right.get_ylim()
    assert top_left.get_ylim() == top_right.get_ylim()
    assert bottom_left.get_yscale() == "log"
    texts = legend_texts(fig)
    assert any(t.startswith("fault") for t in texts)
    assert any("errors" in t for t in texts)
    title = fig._suptitle.get_text()
    assert "crash-billing" in title and "30 req/s" in title and "monolith vs microservices" in title
    # the run's order (baseline first), each column's answered line in its placement's colour
    for ax, placement in ((top_left, "monolith"), (top_right, "microservices")):
        colours = {to_hex(line.get_color()) for line in ax.get_lines()}
        assert plots.placement_colour(placement) in colours
