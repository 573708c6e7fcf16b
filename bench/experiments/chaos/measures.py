"""Chaos figures from a step's operation log and its fault windows (pure functions, no I/O).

An operation is *answered* when the shop gave a definite answer (a 2xx or a 4xx); a 5xx or
no answer is an error (for a write, an unknown outcome). Times are epoch seconds: each
operation's intended send ``t`` and when its answer (or failure) came, ``done``. An operation
is *during* a fault when it was meant to be sent in the fault's span; its latency, ``done``
minus ``t``, counts there even when the answer came after the fault (the per-second
histograms, bucketed by completion, would count a request a black hole held 3 s as after
it). Latencies are pooled over every trial, never averaged, and a percentile is given only
where it has the samples the harness requires of it everywhere
(``bench.results.model.Quantile``: 10/(1-q)).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.results.model import QUANTILE

RECOVERED_AFTER_S = 1.0  # recovered: every operation of this long a span answered
LATENCY_KEYS = ("p50", "p90", "p99")


def answered(op: dict[str, Any]) -> bool:
    return op["outcome"] in ("ok", "failed")


def window_span(window: dict[str, Any]) -> tuple[float, float]:
    """When a fault's effect lasts: from its start until it was undone, or, for a crash,
    until the restarted server answered (whichever is later)."""
    end = window.get("end") or window["start"]
    return window["start"], max(end, window.get("back") or end)


def inside(op: dict[str, Any], spans: Sequence[tuple[float, float]]) -> bool:
    return any(start <= op["t"] < end for start, end in spans)


def availability(ops: Sequence[dict[str, Any]]) -> float | None:
    """The share of operations answered, None for none."""
    return sum(map(answered, ops)) / len(ops) if ops else None


def latency_ms(ops: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Latency of ``ops`` (answer time minus intended send time), ms: the count, p50/p90/p99
    (None where the samples are fewer than the percentile needs) and the maximum."""
    values = np.array([(op["done"] - op["t"]) * 1000 for op in ops], dtype=float)
    out: dict[str, Any] = {"samples": len(values)}
    for key in LATENCY_KEYS:
        q = QUANTILE[key]
        out[key] = float(np.percentile(values, q.q)) if len(values) >= q.min_samples else None
    out["max"] = float(values.max()) if len(values) else None
    return out


def recovery_s(ops: Sequence[dict[str, Any]], window: dict[str, Any],
               until: float = float("inf")) -> float | None:
    """Seconds from when the fault was undone until the first moment after which every
    operation for ``RECOVERED_AFTER_S`` was answered (0: no error after the undo). None when
    it had not recovered by ``until`` (the next fault's start) or the log's end."""
    undone = window.get("end")
    if undone is None:
        return None
    # only operations over before the next fault began: one in flight then is its victim
    after = [op for op in ops if undone <= op["t"] and op["done"] < until]
    if not after or after[-1]["t"] - undone < RECOVERED_AFTER_S:
        return None
    last_error = max((op["t"] for op in after if not answered(op)), default=None)
    if last_error is None:
        return 0.0
    rest = [op for op in after if op["t"] > last_error]
    if not rest or rest[-1]["t"] - last_error < RECOVERED_AFTER_S:
        return None
    return rest[0]["t"] - undone


def timeline(ops: Sequence[dict[str, Any]], t0: float) -> list[dict[str, Any]]:
    """Per second of intended send time from ``t0``: answered and error counts, and the
    median (None below the samples a p50 needs) and maximum latency, ms."""
    if not ops:
        return []
    buckets: dict[int, list[dict[str, Any]]] = {}
    for op in ops:
        buckets.setdefault(int(op["t"] - t0), []).append(op)
    rows = []
    for i in range(0, max(buckets) + 1):
        chunk = buckets.get(i, [])
        latency = latency_ms(chunk)
        rows.append({"t": float(i),
                     "answered_per_s": float(sum(map(answered, chunk))),
                     "errors_per_s": float(sum(not answered(op) for op in chunk)),
                     "p50_ms": latency["p50"], "max_ms": latency["max"]})
    return rows


def summarise(steps: Sequence[tuple[list[dict[str, Any]], dict[str, Any]]]) -> dict[str, Any]:
    """One placement's figures for one plan over its trials: ``steps`` are (ops, extra) with
    ``extra`` the step's ``faults`` (windows), ``oracle`` (verdict) and ``restarts``."""
    during: list[dict[str, Any]] = []
    outside: list[dict[str, Any]] = []
    recoveries: list[float] = []
    never = 0
    oracle: dict[str, Any] = {}
    restarts = windows = 0
    not_applied = 0
    for ops, extra in steps:
        applied = [w for w in extra.get("faults", []) if w.get("applied", True)]
        not_applied += len(extra.get("faults", [])) - len(applied)
        spans = [window_span(w) for w in applied]
        windows += len(spans)
        for op in ops:
            (during if inside(op, spans) else outside).append(op)
        starts = sorted(w["start"] for w in applied)
        for window in applied:
            later = [t for t in starts if t > window["start"]]
            took = recovery_s(ops, window, until=later[0] if later else float("inf"))
            if took is None:
                never += 1
            else:
                recoveries.append(took)
        restarts += int(extra.get("restarts", 0))
        for key, value in (extra.get("oracle") or {}).items():
            if isinstance(value, bool):
                oracle[key] = oracle.get(key, True) and value
            elif isinstance(value, (int, float)):
                oracle[key] = oracle.get(key, 0) + value
            elif isinstance(value, list):
                oracle[key] = oracle.get(key, []) + value
    everything = during + outside
    return {
        "ops": len(everything), "ops_during": len(during), "windows": windows,
        "not_applied": not_applied,
        "availability": {"overall": availability(everything), "during": availability(during),
                         "outside": availability(outside)},
        "latency_ms": {"during": latency_ms(during), "outside": latency_ms(outside)},
        "recovery_s": {"median": statistics.median(recoveries) if recoveries else None,
                       "max": max(recoveries) if recoveries else None,
                       "measured": len(recoveries), "not_recovered_in_step": never},
        "restarts": restarts,
        "oracle": oracle,
    }


def fmt_share(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1%}"
