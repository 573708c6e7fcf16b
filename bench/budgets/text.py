"""How a check writes its figures: through ``bench.render.display`` (the one formatting module),
plus what only a check needs: a fraction as a percentage, a ratio with its unit after the
x, a change as a signed percentage.
"""
from __future__ import annotations

from bench.render import display
from bench.results.model import Estimate, Ratio


def _digits(x: float | None) -> int:
    """Decimals for about three significant figures."""
    x = abs(x or 0)
    return 3 if x < 1 else 2 if x < 10 else 1 if x < 100 else 0


def fmt_estimate(e: Estimate, unit: str) -> str:
    """"6.37 ms (5.16–7.28)"; a unitless fraction as "0.20% (0.05%–0.80%)"."""
    if unit == "" and e.value is not None and e.value <= 1:  # a fraction: as a percentage
        ci = f" ({display.percent(e.low, 2)}–{display.percent(e.high, 2)})" if e.ci95 else ""
        return display.percent(e.value, 2) + ci
    return display.estimate(e, _digits(e.value), unit)


def _signed(x: float) -> str:
    return f"{(x - 1) * 100:+.1f}%"


def fmt_change(e: Estimate, p: float | None = None) -> str:
    """A change new/old as "+23.0% (+12.0% .. +35.0%), p=0.003"."""
    if e.value is None:
        return "n/a"
    ci = f" ({_signed(e.low)} .. {_signed(e.high)})" if e.ci95 is not None else " (no interval)"
    return _signed(e.value) + ci + (f", p={p:.3f}" if p is not None else "")


def ratio_estimate(r: Ratio) -> Estimate:
    """A ratio as an Estimate (x), for the verdict rules."""
    return Estimate(r.value, r.low, r.high, r.pairs, r.supported)
