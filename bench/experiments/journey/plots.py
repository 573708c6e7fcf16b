"""The journey experiment's figures. Like bench/render/plots.py, each function writes one PNG and
returns its path, or None when there is nothing to draw; matplotlib is imported only when
one is called."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.render.plots import US_PER_MS, error_bars, pyplot, save, value_of


def latency_vs_rate(journey: Mapping[str, Mapping[str, Any]], out_path: str | Path,
                    objective_p99_ms: float | None = None) -> Path | None:
    """p50 (solid) and p99 (dashed) journey latency in ms against the scheduled arrival rate
    (req/s), per placement, with 95% CI error bars; ``journey`` is summary["journey"]. The
    p99 objective, when given, is a horizontal line. None if no rung has a latency."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for index, (placement, rungs) in enumerate(journey.items()):
        color = f"C{index}"
        for key, style, label in (("p50", "-", "p50"), ("p99", "--", "p99")):
            rates = [r for r in sorted(rungs, key=float) if value_of(rungs[r].get(key)) is not None]
            if not rates:
                continue
            y = [value_of(rungs[r][key]) / US_PER_MS for r in rates]
            err = np.array([error_bars(rungs[r][key], US_PER_MS) for r in rates]).T
            ax.errorbar([float(r) for r in rates], y, yerr=err, fmt="o" + style, color=color,
                        capsize=3, label=f"{placement} {label}")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    if objective_p99_ms:
        ax.axhline(objective_p99_ms, color="grey", linestyle=":", label=f"p99 objective {objective_p99_ms:g} ms")
    ax.set_xlabel("scheduled arrival rate (req/s)")
    ax.set_ylabel("latency from intended send (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("journey latency vs arrival rate (95% CI)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save(fig, out_path)
