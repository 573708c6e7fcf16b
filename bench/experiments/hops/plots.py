"""The hop-cost experiment's figures. Like bench/render/plots.py, each function writes one PNG and
returns its path, or None when there is nothing to draw; matplotlib is imported only when
one is called."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.render.plots import US_PER_MS, error_bars, pyplot, save, value_of


def hop_cost(hops: Mapping[str, Mapping[str, Any]], floors: Mapping[str, Any],
             out_path: str | Path) -> Path | None:
    """Bars of the chain's p50 latency (µs) per k per placement with 95% CI error bars, and
    horizontal lines at the raw TCP and raw HTTP round-trip p50 floors; ``hops`` and
    ``floors`` are summary["hops"] and summary["floors"]. None without any p50."""
    placements = [p for p, h in hops.items() if any(value_of(e.get("p50")) is not None
                                                    for e in h.get("per_k", {}).values())]
    if not placements:
        return None
    ks = sorted({k for p in placements for k in hops[p]["per_k"]}, key=int)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(placements)
    for index, placement in enumerate(placements):
        per_k = hops[placement]["per_k"]
        present = [k for k in ks if value_of(per_k.get(k, {}).get("p50")) is not None]
        x = np.array([int(k) for k in present]) + (index - (len(placements) - 1) / 2) * width
        y = [value_of(per_k[k]["p50"]) for k in present]
        err = np.array([error_bars(per_k[k]["p50"]) for k in present]).T
        ax.bar(x, y, width, yerr=err, capsize=3, label=placement, color=f"C{index}")
    for kind, style in (("tcp", ":"), ("http", "--")):
        floor = value_of(floors.get(kind, {}).get("p50"))
        if floor is not None:
            ax.axhline(floor, color="black", linestyle=style, linewidth=1,
                       label=f"raw {kind.upper()} round trip p50 ({floor:,.0f} µs)")
    ax.set_xticks([int(k) for k in ks], [f"k={k}" for k in ks])
    ax.set_xlabel("components called in the chain")
    ax.set_ylabel("p50 latency (µs)")
    ax.set_title("hop chain: p50 per k (95% CI) against the floors")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return save(fig, out_path)


def chain_p99(hops: Mapping[str, Any], out_path: str | Path) -> Path | None:
    """p50/p99 (ms) of the hop chain against k per placement (summary["experiments"]["hops"]):
    compounding along a chain, where each call adds its own tail in series."""
    placements = {p: e.get("per_k") for p, e in hops.get("placements", {}).items() if e.get("per_k")}
    if not placements:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for index, (placement, per_k) in enumerate(placements.items()):
        ks = sorted(per_k, key=int)
        for key, style in (("p50", ":"), ("p99", "-")):
            values = [(per_k[k].get(key) or {}).get("value") for k in ks]
            pairs = [(int(k), v / US_PER_MS) for k, v in zip(ks, values) if v is not None]
            if pairs:
                ax.plot(*zip(*pairs), "o" + style, color=f"C{index}", label=f"{placement} {key}")
    ax.set_xlabel("k (component calls in a chain)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("compounding along a chain: /chain?k=")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save(fig, out_path)
