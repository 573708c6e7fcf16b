"""The fan-out figures, from a run's summary as pandas frames: shared by the report and by
notebooks/p99_compounding.ipynb, so both draw the same thing.

``fanout_frame(result)`` flattens summary["experiments"]["fanout"] into one row per
(placement, kind) with measured and predicted percentiles in ms; the plotting functions take
that frame. Like bench/render/plots.py, each writes one PNG and returns its path, or None when
there is nothing to draw, and imports matplotlib only when called.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.render.plots import pyplot, save

US_PER_MS = 1000.0
KEYS = ("p50", "p90", "p99", "p99.9")
STYLE = {"p50": ":", "p90": "-.", "p99": "-", "p99.9": "--"}


def fanout_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per placement and kind: n, variant, and for each of p50/p90/p99/p99.9 the
    measured value and 95% interval and the F(t)^n prediction, all in ms (NaN when absent
    or resting on too few samples). ``basis`` "leaf": the measured values are the slowest of
    the n leaves the scatterer timed, which is what F(t)^n predicts; otherwise (older runs)
    whole requests against F from n = 1 requests."""
    rows = []
    for placement, entry in result.get("placements", {}).items():
        for name, kind in entry.get("kinds", {}).items():
            basis = next((p.get("basis") for p in (kind.get("predicted") or {}).values()), None)
            row: dict[str, Any] = {"placement": placement, "kind": name, "n": kind["n"],
                                   "variant": kind["variant"], "basis": basis}
            for key in KEYS:
                pred = (kind.get("predicted") or {}).get(key) or {}
                # a prediction for the slowest leaf is drawn against the slowest leaf measured
                est = (pred.get("measured") if pred.get("basis") == "leaf" else kind.get(key)) or {}
                ok = est.get("value") is not None and est.get("supported", True)
                ci = est.get("ci95") or (np.nan, np.nan)
                row[key] = est["value"] / US_PER_MS if ok else np.nan
                row[f"{key}_low"], row[f"{key}_high"] = (c / US_PER_MS if ok else np.nan for c in ci)
                row[f"{key}_predicted"] = (pred["value"] / US_PER_MS
                                           if pred.get("value") and pred.get("supported") else np.nan)
            slow = kind.get("slow_fraction") or {}
            row["slow_measured"] = slow.get("measured", np.nan)
            row["slow_expected"] = slow.get("expected", np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def percentiles_vs_n(frame: pd.DataFrame, out_path: str | Path,
                     variants: tuple[str, ...] = ("plain", "tail")) -> Path | None:
    """p50/p90/p99/p99.9 (ms) against n on log axes, one panel per placement and variant:
    measured with 95% error bars, F(t)^n from the measured n = 1 as a thin line."""
    frame = frame[frame["variant"].isin(variants)] if len(frame) else frame
    if frame.empty:
        return None
    panels = [(p, v) for p in frame["placement"].unique() for v in variants
              if not frame[(frame.placement == p) & (frame.variant == v)].empty]
    plt = pyplot()
    from matplotlib import ticker
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False,
                             sharey=True)
    for ax, (placement, variant) in zip(axes[0], panels):
        rows = frame[(frame.placement == placement) & (frame.variant == variant)].sort_values("n")
        for index, key in enumerate(KEYS):
            color = f"C{index}"
            have = rows[rows[key].notna()]
            if not have.empty:
                err = np.array([(have[key] - have[f"{key}_low"]).clip(lower=0),
                                (have[f"{key}_high"] - have[key]).clip(lower=0)])
                ax.errorbar(have["n"], have[key], yerr=np.nan_to_num(err), fmt="o" + STYLE[key],
                            color=color, capsize=3, label=f"{key} measured")
            pred = rows[rows[f"{key}_predicted"].notna()]
            if not pred.empty:
                ax.plot(pred["n"], pred[f"{key}_predicted"], color=color, linewidth=4, alpha=0.3,
                        label=f"{key} F(t)^n")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(rows["n"].unique()), [str(n) for n in sorted(rows["n"].unique())])
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("fan-out n (leaves per request)")
        ax.set_title(f"{placement}, {variant}", fontsize="medium")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("slowest leaf, from the scatter's ask (ms)"
                          if (frame["basis"] == "leaf").any() else "latency from intended send (ms)")
    axes[0][-1].legend(fontsize="x-small")
    return save(fig, out_path)


def hedging_bars(result: Mapping[str, Any], out_path: str | Path) -> Path | None:
    """p99 and p99.9 (ms) without and with hedging, per placement, 95% error bars."""
    data = {p: e["hedging"] for p, e in result.get("placements", {}).items() if e.get("hedging")}
    if not data:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    labels, x = [], 0
    for placement, h in data.items():
        for key in ("p99", "p99.9"):
            for offset, which in ((0, "unhedged"), (1, "hedged")):
                est = (h.get(key) or {}).get(which) or {}
                if est.get("value") is None:
                    continue
                value = est["value"] / US_PER_MS
                ci = est.get("ci95") or (est["value"], est["value"])
                ax.bar(x + offset, value, color=f"C{offset}", width=0.9,
                       yerr=[[max(0, value - ci[0] / US_PER_MS)], [max(0, ci[1] / US_PER_MS - value)]],
                       capsize=3, label=which if not labels else None)
            labels.append((x + 0.5, f"{placement}\n{key}"))
            x += 3
    if not labels:
        plt.close(fig)
        return None
    ax.set_xticks([p for p, _ in labels], [t for _, t in labels], fontsize="small")
    ax.set_yscale("log")
    ax.set_ylabel("latency from intended send (ms)")
    n = next(iter(data.values()))["n"]
    ax.set_title(f"hedging at n={n} with one slow replica per shard (95% CI)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend()
    return save(fig, out_path)
