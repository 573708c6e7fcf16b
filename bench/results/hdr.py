"""Latency histograms: one shape for the whole harness, and the HdrHistogram log format.

Every latency is recorded in **microseconds** into an HdrHistogram tracking 1 µs .. 60 s at
3 significant figures, so any two histograms of a run can be added exactly. Percentiles are
only ever read from a histogram (merged first when there are several), never averaged.

Interval logs follow HdrHistogram's log format 1.3 (``Tag=NAME,start,length,max,payload``
lines, payload in the standard compressed base64 encoding), so Java's
``HistogramLogProcessor -tag NAME`` and other HdrHistogram tools read them.
"""
from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000  # 60 s
SIGNIFICANT_FIGURES = 3
LOG_FORMAT_VERSION = "1.3"


def new_histogram() -> HdrHistogram:
    """An empty histogram of the harness's one shape (µs, 1 µs .. 60 s, 3 figures)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def clear(histogram: HdrHistogram) -> None:
    """Empty ``histogram`` in place, in microseconds: HdrHistogram's own ``reset`` zeroes its
    17,408 counts one by one in Python (0.6 ms), which the generator cannot afford between
    two sends."""
    ctypes.memset(histogram.counts, 0, ctypes.sizeof(histogram.counts))
    histogram.total_count = 0
    histogram.min_value = sys.maxsize
    histogram.max_value = 0
    histogram.start_time_stamp_msec = sys.maxsize
    histogram.end_time_stamp_msec = 0


def encode(histogram: HdrHistogram) -> str:
    """HdrHistogram's standard compressed base64 encoding (V2 format)."""
    return histogram.encode().decode("ascii")


def decode(payload: str) -> HdrHistogram:
    """The inverse of ``encode``; returns a histogram of the harness's shape."""
    out = new_histogram()
    out.add(HdrHistogram.decode(payload.encode("ascii")))
    return out


def merge(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    """The sum of ``histograms``: the histogram of all their samples together."""
    out = new_histogram()
    for histogram in histograms:
        out.add(histogram)
    return out


@dataclass(frozen=True)
class Interval:
    """One line of an interval log: a histogram of what completed in [start_s, start_s+length_s)."""

    tag: str
    start_s: float  # seconds since the log's base time
    length_s: float
    histogram: HdrHistogram


class IntervalLogWriter:
    """Writes tagged interval histograms (log format 1.3) to an open text file."""

    def __init__(self, out: TextIO, start_time_s: float, comment: str = "") -> None:
        self._out = out
        if comment:
            out.write(f"#{comment}\n")
        out.write(f"#[Histogram log format version {LOG_FORMAT_VERSION}]\n")
        out.write(f"#[StartTime: {start_time_s:.3f} (seconds since epoch)]\n")
        out.write(f"#[BaseTime: {start_time_s:.3f} (seconds since epoch)]\n")
        out.write('"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')

    def write(self, tag: str, start_s: float, length_s: float, histogram: HdrHistogram) -> None:
        """Append one interval; ``start_s`` is relative to the base time. Max is in ms, as
        HdrHistogram's tools print it for µs-recorded logs with a ratio of 1000."""
        if "," in tag or " " in tag:
            raise ValueError(f"an interval log tag may not contain ',' or ' ': {tag!r}")
        max_ms = histogram.get_max_value() / 1000.0
        self._out.write(f"Tag={tag},{start_s:.3f},{length_s:.3f},{max_ms:.3f},{encode(histogram)}\n")


def read_interval_log(path: str | Path) -> Iterator[Interval]:
    """The intervals of a log written by ``IntervalLogWriter`` (untagged lines get tag "")."""
    with open(path, encoding="ascii") as log:
        for line in log:
            if line.startswith("#") or line.startswith('"') or not line.strip():
                continue
            tag = ""
            if line.startswith("Tag="):
                tag, line = line[4:].split(",", 1)
            start, length, _max, payload = line.strip().split(",", 3)
            yield Interval(tag, float(start), float(length), decode(payload))
