"""The hop-cost experiment's figures. Like bench/render/plots.py, each function writes one PNG and
returns its path, or None when there is nothing to draw; matplotlib is imported only when
one is called."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.render.plots import (REFERENCE_COLOUR, TOO_FEW_SAMPLES, US_PER_MS, compared,
                                error_bars, left_out_handle, log_if_wide, mark_left_out,
                                placement_colour, pyplot, rate_text, room_at_foot, save,
                                value_of, wrapped)


def hop_cost(hops: Mapping[str, Mapping[str, Any]], floors: Mapping[str, Any],
             out_path: str | Path, http_hops: Mapping[str, Sequence[int]] | None = None,
             rate: float | None = None) -> Path | None:
    """Bars of the chain's p50 latency (µs) per k per placement in its colour, with 95% CI
    error bars, and horizontal lines at the raw TCP and raw HTTP round-trip p50 floors;
    ``hops`` and ``floors`` are summary["hops"] and summary["floors"]; ``http_hops``:
    placement -> HTTP hops a chain crosses per k (its legend says how a placement calls);
    ``rate`` (req/s) is for the title. A k without a p50 is an 'x' at the foot. None without
    any p50."""
    placements = [p for p, h in hops.items() if any(value_of(e.get("p50")) is not None
                                                    for e in h.get("per_k", {}).values())]
    if not placements:
        return None
    ks = sorted({k for p in placements for k in hops[p]["per_k"]}, key=int)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.6), layout="constrained")
    width = 0.8 / len(placements)
    drawn, left_out = [], False
    for index, placement in enumerate(placements):
        per_k = hops[placement]["per_k"]
        offset = (index - (len(placements) - 1) / 2) * width
        present = [k for k in ks if value_of(per_k.get(k, {}).get("p50")) is not None]
        x = np.array([int(k) for k in present]) + offset
        y = [value_of(per_k[k]["p50"]) for k in present]
        err = np.array([error_bars(per_k[k]["p50"]) for k in present]).T
        ax.bar(x, y, width, yerr=err, capsize=3, color=placement_colour(placement),
               label=_hops_label(placement, (http_hops or {}).get(placement)))
        drawn += list(y)
        gaps = [int(k) + offset for k in ks if k not in present]
        mark_left_out(ax, gaps, placement_colour(placement))
        left_out = left_out or bool(gaps)
    for kind, style in (("tcp", ":"), ("http", "--")):
        floor = value_of(floors.get(kind, {}).get("p50"))
        if floor is not None:
            ax.axhline(floor, color=REFERENCE_COLOUR, linestyle=style, linewidth=1,
                       label=f"raw {kind.upper()} round trip p50 ({floor:,.0f} µs, a "
                             f"standalone client): floor of one {kind.upper()} hop")
    ax.set_xticks([int(k) for k in ks], [f"k={k}" for k in ks])
    ax.set_xlabel("components called in the chain (k)")
    ax.set_ylabel("p50 latency from intended send (µs)")
    if not log_if_wide(ax, drawn):
        ax.set_ylim(bottom=0)
    ax.set_title(wrapped(f"Hop chain /chain?k={rate_text(rate)}: p50 per k, "
                         f"{compared(placements)}\nagainst the raw round-trip floors (95% CI)",
                         fig.get_figwidth()))
    ax.grid(True, axis="y", alpha=0.3)
    handles = ax.get_legend_handles_labels()[0]
    if left_out:
        handles.append(left_out_handle("no p50"))
    fig.legend(handles=handles, fontsize="small", loc="outside lower center")
    return save(fig, out_path)


def _hops_label(placement: str, http_hops: Sequence[int] | None) -> str:
    """A placement's legend entry, saying how its chain calls: a placement making no HTTP hop
    (the monolith's calls are function calls) may sit under the HTTP floor, and the reader
    should not have to guess why."""
    if not http_hops:
        return placement
    if not any(http_hops):
        return (f"{placement}: its k calls are in-process function calls, no HTTP hop\n"
                f"between components, so no floor applies and it may sit under them")
    return f"{placement}: {min(http_hops)} to {max(http_hops)} HTTP hops per chain"


def chain_p99(hops: Mapping[str, Any], out_path: str | Path) -> Path | None:
    """p50 (dotted) and p99 (solid) in ms of the hop chain against k per placement in its
    colour (summary["experiments"]["hops"]): compounding along a chain, where each call adds
    its own tail in series. A percentile too few samples support is a hollow mark at the
    foot."""
    placements = {p: e.get("per_k") for p, e in hops.get("placements", {}).items() if e.get("per_k")}
    if not placements:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5), layout="constrained")
    drawn, left_out, all_ks = [], False, set()
    for index, (placement, per_k) in enumerate(placements.items()):
        colour = placement_colour(placement)
        shift = (index - (len(placements) - 1) / 2) * 8.0  # points: the marks side by side
        ks = sorted(per_k, key=int)
        all_ks |= {int(k) for k in ks}
        for row, (key, style, marker) in enumerate((("p50", ":", "o"), ("p99", "-", "^"))):
            values = [value_of(per_k[k].get(key)) for k in ks]
            pairs = [(int(k), v / US_PER_MS) for k, v in zip(ks, values) if v is not None]
            if pairs:
                ax.plot(*zip(*pairs), marker + style, color=colour, label=f"{placement} {key}")
                drawn += [v for _, v in pairs]
            gaps = [int(k) for k, v in zip(ks, values) if v is None]
            mark_left_out(ax, gaps, colour, marker=marker, row=row, shift_pt=shift)
            left_out = left_out or bool(gaps)
    ax.set_xticks(sorted(all_ks))
    ax.set_xlabel("k (component calls in a chain)")
    ax.set_ylabel("latency from intended send (ms)")
    log_if_wide(ax, drawn)
    if left_out:
        room_at_foot(ax, rows=2)
    rate = hops.get("settings", {}).get("rate")
    ax.set_title(wrapped(f"Compounding along a chain /chain?k={rate_text(rate)}:\n"
                         f"p50 and p99 against k, {compared(placements)}", fig.get_figwidth()))
    ax.grid(True, which="both", alpha=0.3)
    handles = ax.get_legend_handles_labels()[0]
    if left_out:
        handles.append(left_out_handle(f"{TOO_FEW_SAMPLES} (hollow, shaped as its line)", "o"))
    fig.legend(handles=handles, fontsize="small", loc="outside lower center")
    return save(fig, out_path)
