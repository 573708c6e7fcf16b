"""The hedge delay that follows load: "hedge after the p95 of this class of requests".

Dean and Barroso ("The Tail at Scale", CACM 2013) defer a backup request until the first
has been outstanding longer than the 95th-percentile latency expected for its class, which
bounds the extra load to about 5%. A p95 measured once, one request at a time, is not the
p95 under load, and a hedge set at it fires late anyway (the thread that looks must win the
interpreter lock back from the leaves' threads): measured here, it hedged 18% of calls
under a step's load where calibration had found 4.7%, and under 2% where it was set at the
leaves' own p95. So the delay is tracked online, on the hedge's own view: after each look,
what share of that scatter's primaries it found still out.
"""
from __future__ import annotations

import math
import threading

from shop.errors import InvalidValue

MAX_HEDGE_SHARE = 0.5
GAIN = 0.5  # log-delay step per unit of (share found out - share wanted)
START_MS = 1.0  # the first delay of a class; steps of about 2.5% a scatter correct it
FLOOR_MS, CEILING_MS = 0.01, 10_000.0


def check_share(share: float) -> None:
    if not 0 < share <= MAX_HEDGE_SHARE:  # NaN fails too
        raise InvalidValue(f"hedge_share must be over 0 and at most {MAX_HEDGE_SHARE:g}")


class HedgeDelay:
    """The delay (ms) after which about ``share`` of primaries are still out, as the hedge
    finds them when it looks.

    A stochastic-approximation quantile estimate (Robbins and Monro): after each look that
    found ``out`` of the primaries still out, the delay is multiplied by
    exp(GAIN * (out - share)). It settles where the mean of ``out`` is ``share``, under
    whatever load the process carries at the time, so the share of leaf calls hedged is
    ``share`` by construction and what hedging at that delay buys the tail is the finding.
    Thread-safe: one per class of request (the share and the fan-out n) per process.
    """

    def __init__(self, share: float, start_ms: float = START_MS) -> None:
        check_share(share)
        self.share = share
        self._log_ms = math.log(start_ms)
        self._lock = threading.Lock()

    def current_ms(self) -> float:
        with self._lock:
            return math.exp(self._log_ms)

    def looked(self, out: float) -> None:
        """The hedge looked and found the share ``out`` (0..1) of its primaries still out."""
        with self._lock:
            self._log_ms = min(math.log(CEILING_MS), max(
                math.log(FLOOR_MS), self._log_ms + GAIN * (out - self.share)))
