"""The report's figures: each function takes data, writes one PNG and returns its path.

matplotlib is imported (with the Agg backend) inside the functions, so importing this module
does no work. Every function returns None, writing nothing, when there is nothing to draw
(an incomplete run may lack an experiment's steps or a placement). Latencies arrive in µs;
each axis label says whether it shows µs or ms. Estimates are ``bench.results.model.Estimate``
as JSON: ``{"value": x, "ci95": [lo, hi] | None, "supported": false when too few samples}``.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

US_PER_MS = 1000.0
DPI = 100
SPECTRUM_TICKS = {1: "0%", 10: "90%", 100: "99%", 1_000: "99.9%", 10_000: "99.99%",
                  100_000: "99.999%"}
SPECTRUM_POINTS = 200
LAG_KEYS = ("p50", "p99", "p99.9", "max")  # model.QUANTILES' keys, and the maximum


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (no display, no threads)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig: Any, out_path: str | Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_path, dpi=DPI, format="png")
    pyplot().close(fig)
    return out_path


def value_of(estimate: Mapping[str, Any] | None) -> float | None:
    """An estimate's value; None when absent or not supported by enough samples."""
    if not estimate or estimate.get("value") is None or estimate.get("supported") is False:
        return None
    return float(estimate["value"])


def error_bars(estimate: Mapping[str, Any] | None, scale: float = 1.0) -> tuple[float, float]:
    """(below, above) error-bar lengths of an estimate's 95% CI, clipped at 0 (a bootstrap
    interval may not contain its point estimate); (0, 0) without an interval."""
    value, ci = value_of(estimate), (estimate or {}).get("ci95")
    if value is None or not ci:
        return 0.0, 0.0
    return max(0.0, (value - ci[0]) / scale), max(0.0, (ci[1] - value) / scale)


def spectrum_points(histogram: HdrHistogram,
                    points: int = SPECTRUM_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The percentile spectrum of ``histogram`` as HdrHistogram plots it.

    Returns (x, latency_us): x = 1/(1-q) for percentile fractions q on a log grid from 0 up to
    1 - 1/count (beyond that the data say nothing more than the maximum); latency in µs read
    with ``get_value_at_percentile``. Empty arrays for an empty histogram."""
    total = histogram.get_total_count()
    if total <= 0:
        return np.zeros(0), np.zeros(0)
    x = np.unique(np.concatenate([np.logspace(0, np.log10(max(total, 1)), points), [float(total)]]))
    values = np.array([histogram.get_value_at_percentile(100.0 * (1.0 - 1.0 / xi)) for xi in x],
                      dtype=float)
    return x, values


def percentile_spectrum(histograms: Mapping[str, HdrHistogram], title: str,
                        out_path: str | Path) -> Path | None:
    """One line per placement (``histograms``: placement -> merged µs histogram), latency in
    ms against percentile on HdrHistogram's 1/(1-q) log axis. None if every one is empty."""
    curves = {name: spectrum_points(h) for name, h in histograms.items() if h.get_total_count()}
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    widest = 10.0
    for name, (x, values_us) in curves.items():
        ax.plot(x, values_us / US_PER_MS, label=f"{name} (n={int(histograms[name].get_total_count())})")
        widest = max(widest, float(x[-1]))
    ax.set_xscale("log")
    ticks = [t for t in SPECTRUM_TICKS if t <= widest * 10]
    ax.set_xticks(ticks, [SPECTRUM_TICKS[t] for t in ticks])
    ax.set_xlim(1, 10 ** np.ceil(np.log10(widest)))
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    return save(fig, out_path)


def resources(cpu_ms_per_request: Mapping[str, Mapping[str, Any] | None],
              rss_mib: Mapping[str, float | None], title: str,
              out_path: str | Path) -> Path | None:
    """Two panels of bars per placement: CPU-ms per request (with its 95% CI when present)
    and peak memory (PSS, or RSS for older runs) in MiB. None when neither has a value."""
    cpu = {p: e for p, e in cpu_ms_per_request.items() if value_of(e) is not None}
    rss = {p: float(v) for p, v in rss_mib.items() if v is not None}
    if not cpu and not rss:
        return None
    placements = list(dict.fromkeys([*cpu_ms_per_request, *rss_mib]))
    colors = {p: f"C{i}" for i, p in enumerate(placements)}
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.5))
    _placement_bars(left, {p: value_of(e) for p, e in cpu.items()},
                    {p: error_bars(e) for p, e in cpu.items()}, colors, "CPU-ms per request")
    _placement_bars(right, rss, {}, colors, "peak memory (MiB)")
    fig.suptitle(title)
    return save(fig, out_path)


def _placement_bars(ax: Any, heights: Mapping[str, float], errors: Mapping[str, tuple[float, float]],
                    colors: Mapping[str, str], ylabel: str) -> None:
    """One bar per placement on ``ax`` (error bars where ``errors`` has them)."""
    names = list(heights)
    if not names:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    else:
        err = np.array([errors.get(p, (0.0, 0.0)) for p in names]).T if errors else None
        ax.bar(names, [heights[p] for p in names], yerr=err, capsize=4,
               color=[colors[p] for p in names])
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)


def notification_lag(lag_us: Mapping[str, Mapping[str, Any] | None], title: str,
                     out_path: str | Path) -> Path | None:
    """Grouped bars of notification lag (payment event -> notification stored) at p50,
    p99, p99.9 and max in ms, per placement; ``lag_us``: placement -> the summary's
    ``notification_lag_us`` (plain µs numbers). None when no placement has a lag."""
    present = {p: lag for p, lag in lag_us.items() if lag and lag.get("count")}
    if not present:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(present)
    for index, (placement, lag) in enumerate(present.items()):
        x = np.arange(len(LAG_KEYS)) + (index - (len(present) - 1) / 2) * width
        # a percentile too few samples support is left out (NaN draws no bar)
        y = [(value_of(lag[key]) if isinstance(lag.get(key), Mapping) else lag.get(key))
             for key in LAG_KEYS]
        y = [float("nan") if v is None else float(v) / US_PER_MS for v in y]
        ax.bar(x, y, width, label=f"{placement} (n={lag['count']})", color=f"C{index}")
    ax.set_xticks(np.arange(len(LAG_KEYS)), list(LAG_KEYS))
    ax.set_ylabel("notification lag (ms)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return save(fig, out_path)
