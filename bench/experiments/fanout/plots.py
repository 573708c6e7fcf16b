"""The fan-out figures, from a run's summary as pandas frames: shared by the report and by
notebooks/p99_compounding.ipynb, so both draw the same thing.

``fanout_frame(result)`` flattens summary["experiments"]["fanout"] into one row per
(placement, kind) with measured and predicted percentiles in ms (and in ``frame.attrs`` the
step's rate in req/s and the placements left out, with why); the plotting functions take
that frame. Like bench/render/plots.py, each writes one PNG and returns its path, or None when
there is nothing to draw, and imports matplotlib only when called.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.render.plots import (NEUTRAL_COLOUR, TOO_FEW_SAMPLES, compared,
                                error_bars, left_out_handle, log_if_wide, mark_left_out,
                                placement_colour, pyplot, rate_text, room_at_foot, save,
                                shades, value_of, wrapped)

US_PER_MS = 1000.0
KEYS = ("p50", "p90", "p99", "p99.9")
# a percentile is told by its line style and marker; the colour is the placement's (a shade
# of it per percentile), as in every other figure
STYLE = {"p50": ":", "p90": "-.", "p99": "-", "p99.9": "--"}
MARKER = {"p50": "o", "p90": "s", "p99": "^", "p99.9": "D"}


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
    frame = pd.DataFrame(rows)
    frame.attrs["rate"] = result.get("settings", {}).get("rate")  # req/s, for the titles
    # a placement with no row was not measured: the figures say so rather than drop it
    frame.attrs["left_out"] = {
        placement: f"no valid trial of {entry.get('trials', 0)}"
        for placement, entry in result.get("placements", {}).items() if not entry.get("kinds")}
    return frame


def percentiles_vs_n(frame: pd.DataFrame, out_path: str | Path,
                     variants: tuple[str, ...] = ("plain", "tail"),
                     rate: float | None = None) -> Path | None:
    """p50/p90/p99/p99.9 (ms) against n on log axes, one panel per placement and variant, in
    the placement's colour (a shade per percentile): measured with 95% error bars, F(t)^n as
    a thick pale line; a percentile too few samples support is a hollow marker at the foot.
    ``rate`` (req/s) is for the title, by default ``frame.attrs["rate"]``."""
    rate = frame.attrs.get("rate") if rate is None else rate
    not_measured = dict(frame.attrs.get("left_out") or {})
    frame = frame[frame["variant"].isin(variants)] if len(frame) else frame
    if frame.empty:
        return None
    placements = list(frame["placement"].unique())
    panels = [(p, v) for p in placements for v in variants
              if not frame[(frame.placement == p) & (frame.variant == v)].empty]
    plt = pyplot()
    width = len(panels) + len(not_measured)
    fig, axes = plt.subplots(1, width, figsize=(max(3.6 * width, 7.5), 5.4),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, (placement, why) in zip(axes[0][len(panels):], not_measured.items()):
        _not_measured_panel(ax, placement, why)
    left_out, drawn = False, []
    for ax, (placement, variant) in zip(axes[0], panels):
        rows = frame[(frame.placement == placement) & (frame.variant == variant)].sort_values("n")
        colours = dict(zip(KEYS, shades(placement_colour(placement), len(KEYS))))
        for row, key in enumerate(KEYS):
            have = rows[rows[key].notna()]
            if not have.empty:
                err = np.array([(have[key] - have[f"{key}_low"]).clip(lower=0),
                                (have[f"{key}_high"] - have[key]).clip(lower=0)])
                ax.errorbar(have["n"], have[key], yerr=np.nan_to_num(err),
                            fmt=MARKER[key] + STYLE[key], color=colours[key], capsize=3)
                drawn += list(have[key]) + list(have[f"{key}_high"])
            pred = rows[rows[f"{key}_predicted"].notna()]
            if not pred.empty:
                ax.plot(pred["n"], pred[f"{key}_predicted"], color=colours[key], linewidth=5,
                        alpha=0.3, solid_capstyle="round")
                drawn += list(pred[f"{key}_predicted"])
            gaps = list(rows[rows[key].isna()]["n"])
            mark_left_out(ax, gaps, colours[key], marker=MARKER[key], row=row)
            left_out = left_out or bool(gaps)
        ax.set_xscale("log", base=2)
        ns = sorted(rows["n"].unique())
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("fan-out n (leaves per request)")
        ax.set_title(f"{placement}, {variant}", fontsize="medium", color=placement_colour(placement))
        ax.grid(True, which="both", alpha=0.3)
    if not log_if_wide(axes[0][0], drawn):  # the panels share the y axis
        axes[0][0].set_ylim(bottom=0)
    if left_out and drawn:
        room_at_foot(axes[0][0], rows=len(KEYS))
    if not drawn:  # an axis with no value on it would show made-up numbers
        for ax in axes[0]:
            ax.text(0.5, 0.5, "no percentile has the samples it needs", ha="center",
                    va="center", transform=ax.transAxes, color=NEUTRAL_COLOUR)
        axes[0][0].set_yticks([])
    leaf = bool((frame["basis"] == "leaf").any())  # older runs timed whole requests
    axes[0][0].set_ylabel("slowest leaf, from the scatter's ask (ms)" if leaf
                          else "latency from intended send (ms)")
    handles = _percentile_handles()
    if left_out:
        handles.append(left_out_handle("too few samples (hollow, shape of its percentile)", "o"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(3, width), fontsize="small")
    what = "the slowest of n leaves" if leaf else "a request waiting for n leaves"
    fig.suptitle(wrapped(f"Fan-out{rate_text(rate)}: {what}, "
                         f"{compared([*placements, *not_measured])}\nmeasured percentiles (95% CI) "
                         f"against F(t)^n, the slowest of n independent leaves", fig.get_figwidth()))
    return save(fig, out_path)


def _not_measured_panel(ax: Any, placement: str, why: str) -> None:
    """A placement's panel with nothing to draw, saying why, in the placement's colour."""
    ax.text(0.5, 0.5, f"not measured:\n{why}", ha="center", va="center", transform=ax.transAxes,
            color=placement_colour(placement))
    ax.set_title(placement, fontsize="medium", color=placement_colour(placement))
    ax.set_xticks([])
    ax.set_xlabel("fan-out n (leaves per request)")


def _percentile_handles() -> list[Any]:
    """Legend entries for the percentiles (style and marker; colour is the panel's placement)
    and for the F(t)^n prediction."""
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=NEUTRAL_COLOUR, linestyle=STYLE[key], marker=MARKER[key],
                      label=f"{key} measured (95% CI)") for key in KEYS]
    handles.append(Line2D([], [], color=NEUTRAL_COLOUR, linewidth=5, alpha=0.3,
                          label="F(t)^n predicted (thick, pale; shade of its percentile)"))
    return handles


def hedging_bars(result: Mapping[str, Any], out_path: str | Path) -> Path | None:
    """p99 and p99.9 (ms) without (solid) and with (hatched) hedging, per placement in its
    colour, 95% error bars; a percentile too few samples support is a hollow mark at the foot.
    None without any placement's hedging step."""
    data = {p: e["hedging"] for p, e in result.get("placements", {}).items() if e.get("hedging")}
    if not data:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    labels, x, drawn, left_out = [], 0, [], False
    for placement, h in data.items():
        colour = placement_colour(placement)
        for key in ("p99", "p99.9"):
            for offset, which in ((0, "unhedged"), (1, "hedged")):
                est = (h.get(key) or {}).get(which)
                value = value_of(est)
                if value is None:
                    mark_left_out(ax, [x + offset], colour, marker="o")
                    left_out = True
                    continue
                below, above = error_bars(est, US_PER_MS)
                ax.bar(x + offset, value / US_PER_MS, width=0.9, yerr=[[below], [above]],
                       capsize=3, **_hedge_style(colour, which == "hedged"))
                drawn += [value / US_PER_MS, value / US_PER_MS + above]
            labels.append((x + 0.5, f"{placement}\n{key}"))
            x += 3
    ax.set_xticks([p for p, _ in labels], [t for _, t in labels], fontsize="small")
    ax.set_xlim(-0.8, x - 1.2)  # the last pair's bars and labels whole
    if not log_if_wide(ax, drawn):
        ax.set_ylim(bottom=0)
    if not drawn:  # an axis with no value on it would show made-up numbers
        ax.text(0.5, 0.5, "no percentile has the samples it needs", ha="center", va="center",
                transform=ax.transAxes, color=NEUTRAL_COLOUR)
        ax.set_yticks([])
    ax.set_ylabel("latency from intended send (ms)")
    n = next(iter(data.values()))["n"]
    rate = result.get("settings", {}).get("rate")
    ax.set_title(wrapped(f"Hedging at n={n}{rate_text(rate)}: {compared(data)}\np99 and p99.9 "
                         f"with one slow replica per shard, unhedged and hedged (95% CI)",
                         fig.get_figwidth()))
    ax.grid(True, axis="y", which="both", alpha=0.3)
    from matplotlib.patches import Patch
    handles = [Patch(**_hedge_style(NEUTRAL_COLOUR, False), label="unhedged"),
               Patch(**_hedge_style(NEUTRAL_COLOUR, True),
                     label="hedged: a backup call to another replica after the hedge delay")]
    if left_out:
        handles.append(left_out_handle(TOO_FEW_SAMPLES, "o"))
    fig.legend(handles=handles, fontsize="small", loc="outside lower center")
    return save(fig, out_path)


def _hedge_style(colour: Any, hedged: bool) -> dict[str, Any]:
    """Bar style: the placement's colour, solid without hedging, hatched and pale with it."""
    if not hedged:
        return {"facecolor": colour, "edgecolor": colour}
    return {"facecolor": shades(colour, 2)[0], "edgecolor": colour, "hatch": "//"}
