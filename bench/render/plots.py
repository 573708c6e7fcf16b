"""The report's figures: each function takes data, writes one PNG and returns its path.

matplotlib is imported (with the Agg backend) inside the functions, so importing this module
does no work. Every function returns None, writing nothing, when there is nothing to draw
(an incomplete run may lack an experiment's steps or a placement). Latencies arrive in µs;
each axis label says whether it shows µs or ms. Estimates are ``bench.results.model.Estimate``
as JSON: ``{"value": x, "ci95": [lo, hi] | None, "supported": false when too few samples}``.

Every figure follows the same rules, so a reader needs no README to read one: a title says
what is compared and at which load; every axis has its unit; an axis whose values span a
decade is logarithmic (``log_if_wide``); each placement has one colour in every figure
(``placement_colour``); a point left out (too few samples, no valid trial) is marked at the
foot of its axis with a legend entry saying why (``mark_left_out``); and nothing is drawn
past the sample rule (a percentile q needs 10/(1-q) samples: ``Quantile.min_samples``).
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.results.model import Quantile

US_PER_MS = 1000.0
DPI = 100
SPECTRUM_TICKS = {1: "0%", 2: "50%", 10: "90%", 100: "99%", 1_000: "99.9%", 10_000: "99.99%",
                  100_000: "99.999%"}
SPECTRUM_POINTS = 200
LAG_KEYS = ("p50", "p99", "p99.9", "max")  # model.QUANTILES' keys, and the maximum

# One colour per placement in every figure. The shipped placements have fixed ones (the
# tab10 colours matplotlib users know); red and grey are kept out: red means errors and
# grey means faults, floors and objectives.
PLACEMENT_COLOURS = {
    "monolith": "#1f77b4",                  # blue
    "microservices": "#ff7f0e",             # orange
    "hybrid": "#2ca02c",                    # green
    "microservices-fanout": "#9467bd",      # purple
    "microservices-pg": "#8c564b",          # brown
    "microservices-rabbitmq": "#e377c2",    # pink
    "microservices-billing-x2": "#bcbd22",  # olive
    "monolith-pg": "#17becf",               # cyan
}
# for any other placement (a topology file of one's own): Dark2, none of them close to a
# colour above, red or grey
OTHER_COLOURS = ("#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
ERROR_COLOUR = "#d62728"  # errors per second
FAULT_COLOUR = "0.6"      # shading of a fault's window
REFERENCE_COLOUR = "black"  # floors and objectives
NEUTRAL_COLOUR = "0.4"  # legend entries that show a style or a mark, not a placement
LINE_MARKERS = ("x", "+", "|", "_")  # markers with no face to leave hollow
LEFT_OUT_Y = 0.025        # where a left-out mark sits, as a fraction of the axis height
TOO_FEW_SAMPLES = "too few samples for the percentile"  # reasons a point is left out
NO_VALUE = "no value"


def placement_colour(name: str) -> str:
    """The colour of placement ``name`` in every figure: fixed for the shipped placements;
    for any other name one of OTHER_COLOURS picked by CRC-32 of the name (not ``hash()``,
    which differs between processes), so a name keeps its colour from run to run."""
    if name in PLACEMENT_COLOURS:
        return PLACEMENT_COLOURS[name]
    return OTHER_COLOURS[zlib.crc32(name.encode()) % len(OTHER_COLOURS)]


def shades(colour: str, count: int) -> list[tuple[float, float, float]]:
    """``count`` shades of ``colour``, light to dark: several lines of one placement (one per
    percentile, one per n) keep its hue and stay apart."""
    from matplotlib.colors import to_rgb
    base = np.array(to_rgb(colour))
    if count <= 1:
        return [tuple(base)]
    out = []
    for step in np.linspace(-0.3, 0.4, count):
        # negative: towards white; positive: towards black
        mixed = base + (1.0 - base) * -step if step < 0 else base * (1.0 - step)
        out.append(tuple(float(c) for c in np.clip(mixed, 0.0, 1.0)))
    return out


def compared(names: Iterable[str]) -> str:
    """'monolith vs microservices': what a figure compares, for its title."""
    return " vs ".join(dict.fromkeys(names))


def wrapped(text: str, width_in: float, points: float = 12.0) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``points`` (a title is 12,
    'medium' 10): a long title is cut at the figure's edge otherwise. A newline already in
    ``text`` is kept."""
    import textwrap
    # DejaVu Sans averages about half an em a character; the 0.95 keeps a margin
    chars = max(20, int(0.95 * width_in * 72.0 / (0.5 * points)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def rate_text(rate: float | None) -> str:
    """' at 60 req/s' for a title ('' when the rate is unknown)."""
    return "" if rate is None else f" at {float(rate):g} req/s"


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (no display, no threads)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig: Any, out_path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``out_path`` and close it."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:  # a constrained figure (a legend outside) lays itself out
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


def log_if_wide(ax: Any, values: Iterable[float | None], axis: str = "y") -> bool:
    """Put ``axis`` ("x" or "y") of ``ax`` on a log scale when its positive finite ``values``
    span a decade or more (largest / smallest >= 10), with plain-number tick labels (5, 10,
    20, not 10^1); returns whether it did. Values under a decade stay linear: a log axis
    would only squeeze them."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v) and v > 0]
    if not finite or max(finite) / min(finite) < 10:
        return False
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    plain_log_labels(ax.xaxis if axis == "x" else ax.yaxis)
    return True


def plain_log_labels(axis: Any) -> None:
    """Plain numbers on a log ``axis`` (5, 10, 20, not 10^1), with 2 and 5 labelled too: an
    axis spanning one or two decades has only one or two powers of ten to read."""
    from matplotlib import ticker
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def mark_left_out(ax: Any, xs: Sequence[float], colour: Any, marker: str = "x",
                  row: int = 0, shift_pt: float = 0.0) -> None:
    """Mark points left out at data x ``xs`` at the foot of ``ax`` (``row`` stacks marks of
    different series upwards, ``shift_pt`` moves them sideways by points, as ``dodge`` does
    the series' points): a hollow marker for a percentile too few samples support, 'x' for
    no value at all; the legend entry is ``left_out_handle``'s."""
    if not len(xs):
        return
    # a mark sits in axes coordinates, so autoscaling would not see its x: a rate or an n
    # left out at the end of the axis is kept inside it
    ax.dataLim.update_from_data_x(np.asarray(xs, dtype=float), ignore=False)
    hollow = is_hollow(marker)
    ax.plot(list(xs), [LEFT_OUT_Y + 0.05 * row] * len(xs), linestyle="none", marker=marker,
            color=colour, markersize=7, markerfacecolor="none" if hollow else colour,
            markeredgecolor=colour, markeredgewidth=1.5, clip_on=False, zorder=5,
            transform=dodge(ax, shift_pt, ax.get_xaxis_transform()))


def is_hollow(marker: str) -> bool:
    """Whether a left-out ``marker`` is drawn hollow (a shape; line markers have no face)."""
    return marker not in LINE_MARKERS


def room_at_foot(ax: Any, rows: int = 1) -> None:
    """Lower ``ax``'s y limit so the band ``mark_left_out`` uses (``rows`` rows of marks) holds
    no data: a mark must not sit on a drawn point or error bar. Works on linear and log axes."""
    ax.autoscale_view()
    low, high = ax.get_ylim()
    band = min(0.5, LEFT_OUT_Y + 0.05 * rows)  # fraction of the height the marks need
    if ax.get_yscale() == "log" and low > 0:
        ax.set_ylim(low * (high / low) ** (-band / (1 - band)), high)
    else:
        ax.set_ylim(low - (high - low) * band / (1 - band), high)
        if low >= 0:  # no tick under zero: a latency or a count below it means nothing
            ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= high])


def dodge(ax: Any, shift_pt: float, transform: Any = None) -> Any:
    """``transform`` (by default ``ax``'s data) moved ``shift_pt`` points sideways: series
    drawn at the same x (placements at one rate) stay apart whatever the axis scale."""
    from matplotlib.transforms import ScaledTranslation
    base = ax.transData if transform is None else transform
    return base + ScaledTranslation(shift_pt / 72.0, 0.0, ax.figure.dpi_scale_trans)


def left_out_handle(reason: str, marker: str = "x") -> Any:
    """A legend entry for ``mark_left_out``'s marks: 'not measured: reason'."""
    from matplotlib.lines import Line2D
    hollow = is_hollow(marker)
    return Line2D([], [], linestyle="none", marker=marker, markersize=7,
                  markerfacecolor="none" if hollow else NEUTRAL_COLOUR,
                  markeredgecolor=NEUTRAL_COLOUR, markeredgewidth=1.5,
                  label=f"not measured: {reason}")


def supported_limit(total: int) -> float:
    """The largest x = 1/(1-q) whose percentile q ``total`` samples support by
    ``Quantile.min_samples`` (10/(1-q) samples: x <= total/10); 0 below 10 samples, where
    not even the minimum (q = 0) is a figure."""
    if total < Quantile("min", 0.0).min_samples:
        return 0.0
    limit = total / 10.0
    # q read back from x = total/10 can round to a percentile needing one sample more: a step
    # down by a part in 10^7 (invisible on the axis) keeps to the tables' rule
    if Quantile("q", 100.0 * (1.0 - 1.0 / limit)).min_samples > total:
        limit *= 1.0 - 1e-7
    return max(limit, 1.0)


def spectrum_points(histogram: HdrHistogram,
                    points: int = SPECTRUM_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The percentile spectrum of ``histogram`` as HdrHistogram plots it, up to the sample
    rule.

    Returns (x, latency_us): x = 1/(1-q) for percentile fractions q on a log grid from 0 up to
    the highest percentile the count supports (q needs 10/(1-q) samples, so x <= count/10:
    1,000 samples reach the p99, not the maximum); latency in µs read with
    ``get_value_at_percentile``. Empty arrays under 10 samples."""
    limit = supported_limit(int(histogram.get_total_count()))
    if limit < 1.0:
        return np.zeros(0), np.zeros(0)
    x = np.unique(np.concatenate([np.logspace(0, np.log10(limit), points), [limit]]))
    values = np.array([histogram.get_value_at_percentile(100.0 * (1.0 - 1.0 / xi)) for xi in x],
                      dtype=float)
    return x, values


def percentile_spectrum(histograms: Mapping[str, HdrHistogram], title: str,
                        out_path: str | Path,
                        colours: Mapping[str, Any] | None = None) -> Path | None:
    """One line per series (``histograms``: name -> merged µs histogram; a placement, or one
    kind of request of a placement), latency in ms against percentile on HdrHistogram's
    1/(1-q) log axis, each line stopping at the highest percentile its samples support.
    ``colours``: name -> colour, by default ``placement_colour``. A series under 10 samples is named in the legend as not
    drawn. None if every histogram is empty."""
    counts = {name: int(h.get_total_count()) for name, h in histograms.items()}
    if not any(counts.values()):
        return None
    curves = {name: spectrum_points(h) for name, h in histograms.items() if counts[name]}
    plt = pyplot()
    from matplotlib.lines import Line2D
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    widest, drawn_ms = 10.0, []
    handles = []
    for name, (x, values_us) in curves.items():
        colour = (colours or {}).get(name) or placement_colour(name)
        if not len(x):
            handles.append(Line2D([], [], linestyle="none", marker="x", color=colour,
                                  label=f"{name} (n={counts[name]:,}): not drawn, under 10 samples"))
            continue
        line, = ax.plot(x, values_us / US_PER_MS, color=colour, linewidth=1.8,
                        label=f"{name} (n={counts[name]:,})")
        # where the curve stops: the data support no higher percentile
        ax.plot(x[-1], values_us[-1] / US_PER_MS, marker="|", markersize=12, color=colour)
        handles.append(line)
        widest = max(widest, float(x[-1]))
        drawn_ms += list(values_us / US_PER_MS)
    ax.set_xscale("log")
    ticks = [t for t in SPECTRUM_TICKS if t <= widest * 10]
    ax.set_xticks(ticks, [SPECTRUM_TICKS[t] for t in ticks])
    ax.set_xlim(1, 10 ** np.ceil(np.log10(widest)))
    ax.set_xlabel("percentile (log scale of 1/(1-q); each line ends with | at the highest\n"
                  "percentile its n samples support: q needs 10/(1-q), so 1,000 reach p99)")
    ax.set_ylabel("latency from intended send (ms)")
    if not log_if_wide(ax, drawn_ms):
        ax.set_ylim(bottom=0)
    ax.set_title(wrapped(title, fig.get_figwidth()))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(handles=handles, fontsize="small", loc="best")
    return save(fig, out_path)


def resources(cpu_ms_per_request: Mapping[str, Mapping[str, Any] | None],
              rss_mib: Mapping[str, float | None], title: str,
              out_path: str | Path) -> Path | None:
    """Two panels of bars per placement: CPU-ms per request (with its 95% CI when present)
    and peak memory (PSS, or RSS for older runs) in MiB; a placement without a value is
    marked 'x' at the foot. None when neither has a value."""
    cpu = {p: e for p, e in cpu_ms_per_request.items() if value_of(e) is not None}
    rss = {p: float(v) for p, v in rss_mib.items() if v is not None}
    if not cpu and not rss:
        return None
    placements = list(dict.fromkeys([*cpu_ms_per_request, *rss_mib]))
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.8))
    _placement_bars(left, placements, {p: value_of(e) for p, e in cpu.items()},
                    {p: error_bars(e) for p, e in cpu.items()}, "CPU per request (ms, 95% CI)")
    _placement_bars(right, placements, rss, {}, "peak memory (MiB)")
    fig.suptitle(wrapped(title, fig.get_figwidth()))
    return save(fig, out_path)


def _placement_bars(ax: Any, placements: Sequence[str], heights: Mapping[str, float],
                    errors: Mapping[str, tuple[float, float]], ylabel: str) -> None:
    """One bar per placement on ``ax`` in its colour (error bars where ``errors`` has them);
    a placement of ``placements`` without a height gets an 'x' at the foot."""
    x = np.arange(len(placements))
    present = [i for i, p in enumerate(placements) if heights.get(p) is not None]
    if present:
        names = [placements[i] for i in present]
        err = np.array([errors.get(p, (0.0, 0.0)) for p in names]).T if errors else None
        ax.bar(x[present], [heights[p] for p in names], yerr=err, capsize=4,
               color=[placement_colour(p) for p in names])
    missing = [i for i in range(len(placements)) if i not in present]
    for i in missing:
        mark_left_out(ax, [float(i)], placement_colour(placements[i]))
    if missing:
        ax.legend(handles=[left_out_handle(NO_VALUE)], fontsize="small")
    ax.set_xticks(x, list(placements))
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)


def notification_lag(lag_us: Mapping[str, Mapping[str, Any] | None], title: str,
                     out_path: str | Path) -> Path | None:
    """Grouped bars of notification lag (payment event -> notification stored) at p50,
    p99, p99.9 and max in ms, per placement in its colour; ``lag_us``: placement -> the
    summary's ``notification_lag_us`` (plain µs numbers). A percentile too few samples
    support is no bar but a hollow mark at the foot. None when no placement has a lag."""
    present = {p: lag for p, lag in lag_us.items() if lag and lag.get("count")}
    if not present:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    width = 0.8 / len(present)
    drawn, left_out = [], False
    for index, (placement, lag) in enumerate(present.items()):
        x = np.arange(len(LAG_KEYS)) + (index - (len(present) - 1) / 2) * width
        y = [(value_of(lag[key]) if isinstance(lag.get(key), Mapping) else lag.get(key))
             for key in LAG_KEYS]
        y = [float("nan") if v is None else float(v) / US_PER_MS for v in y]
        colour = placement_colour(placement)
        ax.bar(x, y, width, label=f"{placement} (n={lag['count']:,})", color=colour)
        gaps = [xi for xi, v in zip(x, y) if np.isnan(v)]
        mark_left_out(ax, gaps, colour, marker="o")
        left_out = left_out or bool(gaps)
        drawn += [v for v in y if not np.isnan(v)]
    ax.set_xticks(np.arange(len(LAG_KEYS)), list(LAG_KEYS))
    ax.set_ylabel("notification lag (ms)")
    log_if_wide(ax, drawn)
    ax.set_title(wrapped(title, fig.get_figwidth()))
    ax.grid(True, axis="y", which="both", alpha=0.3)
    handles = ax.get_legend_handles_labels()[0]
    if left_out:
        handles.append(left_out_handle(TOO_FEW_SAMPLES, marker="o"))
    fig.legend(handles=handles, fontsize="small", loc="outside lower center", ncol=2)
    return save(fig, out_path)
