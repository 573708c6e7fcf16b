"""The journey experiment's figures. Like bench/render/plots.py, each function writes one PNG and
returns its path, or None when there is nothing to draw; matplotlib is imported only when
one is called."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.render.plots import (NEUTRAL_COLOUR, REFERENCE_COLOUR, TOO_FEW_SAMPLES, US_PER_MS,
                                compared, dodge, error_bars, left_out_handle, log_if_wide,
                                mark_left_out, placement_colour, pyplot, room_at_foot, save,
                                value_of, wrapped)

# a percentile is told by line style and marker, a placement by its colour
PERCENTILES = (("p50", "-", "o"), ("p99", "--", "^"))
DODGE_PT = 8.0


def latency_vs_rate(journey: Mapping[str, Mapping[str, Any]], out_path: str | Path,
                    objective_p99_ms: float | None = None) -> Path | None:
    """p50 (solid, circles) and p99 (dashed, triangles) journey latency in ms against the
    scheduled arrival rate (req/s), per placement in its colour, with 95% CI error bars;
    ``journey``: placement -> rate -> {"p50": estimate, "p99": estimate, "left_out": why a
    whole rung has no figure (no valid trial), if so}. A percentile too few samples support
    is a hollow marker at the foot, a rung left out an 'x'; each has a legend entry. Axes
    spanning a decade are logarithmic. The p99 objective, when given, is a horizontal line.
    None if no rung has a latency."""
    plt = pyplot()
    from matplotlib.lines import Line2D
    fig, ax = plt.subplots(figsize=(7.5, 5.6), layout="constrained")
    drawn_ms, rates_seen, too_few, rungs_left_out = [], [], False, set()
    for index, (placement, rungs) in enumerate(journey.items()):
        colour = placement_colour(placement)
        # placements at one rate side by side, DODGE_PT apart, so no error bar hides another
        shift = (index - (len(journey) - 1) / 2) * DODGE_PT
        ladder = sorted(rungs, key=float)
        rates_seen += [float(r) for r in ladder]
        out = [r for r in ladder if rungs[r].get("left_out")]
        mark_left_out(ax, [float(r) for r in out], colour, marker="x", row=2, shift_pt=shift)
        rungs_left_out.update(rungs[r]["left_out"] for r in out)
        for row, (key, style, marker) in enumerate(PERCENTILES):
            measured = [r for r in ladder if r not in out]
            rates = [r for r in measured if value_of(rungs[r].get(key)) is not None]
            if rates:
                y = [value_of(rungs[r][key]) / US_PER_MS for r in rates]
                err = np.array([error_bars(rungs[r][key], US_PER_MS) for r in rates]).T
                x = [float(r) for r in rates]
                ax.errorbar(x, y, yerr=err, fmt=marker + style, color=colour, capsize=3,
                            transform=dodge(ax, shift))
                # a dodged line is not in data coordinates, so autoscaling skips it: add its reach
                ax.update_datalim([*zip(x, np.array(y) - err[0]), *zip(x, np.array(y) + err[1])])
                drawn_ms += y + list(np.array(y) + err[1])
            gaps = [float(r) for r in measured if r not in rates]
            mark_left_out(ax, gaps, colour, marker=marker, row=row, shift_pt=shift)
            too_few = too_few or bool(gaps)
    if not drawn_ms:
        plt.close(fig)
        return None
    handles = [Line2D([], [], color=placement_colour(p), linewidth=6, label=p) for p in journey]
    handles += [Line2D([], [], color=NEUTRAL_COLOUR, linestyle=style, marker=marker,
                       label=f"{key} (95% CI)") for key, style, marker in PERCENTILES]
    if objective_p99_ms:
        handles.append(ax.axhline(objective_p99_ms, color=REFERENCE_COLOUR, linestyle=":",
                                  label=f"p99 objective {objective_p99_ms:g} ms"))
        drawn_ms.append(objective_p99_ms)
    if too_few:
        handles.append(left_out_handle(f"{TOO_FEW_SAMPLES} (hollow, shaped as its line)", "o"))
    for why in sorted(rungs_left_out):
        handles.append(left_out_handle(why, "x"))
    ax.set_xlabel("scheduled arrival rate (req/s)")
    ax.set_ylabel("latency from intended send (ms)")
    log_if_wide(ax, rates_seen, axis="x")
    if not log_if_wide(ax, drawn_ms):
        ax.set_ylim(bottom=0)
    if too_few or rungs_left_out:
        room_at_foot(ax, rows=3 if rungs_left_out else 2)
    # the ladder's own rates are the x labels: the log axis's minor labels would repeat them
    ax.set_xticks(sorted(set(rates_seen)), [f"{r:g}" for r in sorted(set(rates_seen))])
    ax.tick_params(axis="x", which="minor", labelbottom=False)
    ax.set_title(wrapped(f"Journey latency against arrival rate: {compared(journey)}\n"
                         f"p50 and p99 over valid trials (95% CI)", fig.get_figwidth()))
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(handles=handles, fontsize="small", loc="outside lower center", ncol=2)
    return save(fig, out_path)


KIND_COLOURS = {"server": "#4c72b0", "client": "#dd8452", "internal": "#8c8c8c"}


def waterfall(traces: Mapping[str, Sequence[Mapping[str, Any]]], title: str,
              out_path: str | Path) -> Path | None:
    """One panel per trace (its title the key): each span a bar from its offset from the
    root's start, for its duration (ms), one row each, depth-first from the root; SERVER,
    CLIENT and INTERNAL spans in three colours. ``traces``: title -> waterfall_spans(...).
    None when every trace is empty."""
    drawn = {name: spans for name, spans in traces.items() if spans}
    if not drawn:
        return None
    plt = pyplot()
    rows = max(len(spans) for spans in drawn.values())
    fig, axes = plt.subplots(len(drawn), 1, figsize=(8.5, 1.2 + 0.28 * rows * len(drawn)),
                             squeeze=False, layout="constrained")
    for ax, (name, spans) in zip(axes[:, 0], drawn.items()):
        for row, span in enumerate(spans):
            ax.barh(row, span["duration_us"] / US_PER_MS, left=span["start_us"] / US_PER_MS,
                    color=KIND_COLOURS.get(span["kind"], NEUTRAL_COLOUR), height=0.7)
        ax.set_yticks(range(len(spans)),
                      ["  " * span["depth"] + span["label"] for span in spans], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_xlabel("ms from the edge's first byte")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLOURS.values()]
    fig.legend(handles, list(KIND_COLOURS), loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(title)
    return save(fig, out_path)
