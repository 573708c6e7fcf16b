"""CPU and memory of servers the harness cannot see, read from their Prometheus ``/metrics``.

A deployed placement (``seambench run --target``) runs on containers or on a cluster: its
processes are not ours to read in ``/proc``. Each of its servers reports its whole use on
``/metrics`` under Prometheus' standard names (the shop's are shop/serverusage.py's):
``process_cpu_seconds_total`` (CPU seconds, master and workers) and
``process_resident_memory_bytes`` (RSS, bytes). ``MetricsSampler`` reads them every
``period_s`` on a thread of its own and turns each reading into a ``Sample`` of the group
``system``, so ``window_usage`` gives a step's CPU and memory as it does for local processes.

What this measures, and what it cannot:
* CPU is exact to a clock tick (10 ms) per process and per reading; a window's edges fall
  between readings ``period_s`` apart and are placed by linear interpolation (exact under
  steady load). Over a 20 s step at 60 req/s that is at most ~2% of one server's CPU.
* Memory is RSS (PSS is not exported): shared pages count once per process, so a server
  with several workers reads higher than its PSS would.
* Not counted: anything outside the servers listed (a sidecar, the node's kube-proxy, an
  ingress, a database server on another host), and a server whose root restarted (its
  counter starts again; a drop is taken as a restart and counted from zero).
"""
from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from bench.system.sampler import Sample
from shop.address import address_of

CPU_METRIC = "process_cpu_seconds_total"
MEMORY_METRIC = "process_resident_memory_bytes"
SCRAPE_TIMEOUT_S = 2.0
SYSTEM = "system"


class ScrapeError(RuntimeError):
    """A /metrics page that did not answer, or holds no process metrics."""


def read_process_metrics(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) from the /metrics page at ``url``. Raises ScrapeError."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(*address_of(url), timeout=timeout_s)
    try:
        conn.request("GET", parts.path or "/metrics")
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ScrapeError(f"{url}: no answer ({exc})") from None
    finally:
        conn.close()
    if response.status != 200:
        raise ScrapeError(f"{url}: HTTP {response.status}")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name in (CPU_METRIC, MEMORY_METRIC) and not sample.labels:
                values[sample.name] = sample.value
    if CPU_METRIC not in values:
        raise ScrapeError(f"{url}: no {CPU_METRIC} (a server that does not report its CPU)")
    return values[CPU_METRIC], int(values.get(MEMORY_METRIC, 0))


class MetricsSampler:
    """Reads every server's process metrics every ``period_s`` between ``start`` and ``stop``
    (a context manager too). ``samples`` are ``Sample``s of the group ``system``, one series
    per server (a negative pseudo pid each: no pid of ours); ``errors`` says what failed."""

    def __init__(self, urls: Mapping[str, str], period_s: float = 0.5) -> None:
        self.urls = dict(urls)  # server name -> its /metrics URL
        self.period_s = period_s
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._offset: dict[str, float] = {name: 0.0 for name in self.urls}
        self._last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def __enter__(self) -> "MetricsSampler":
        self.read_all()  # a reading before the window, on the caller's thread
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.read_all()  # and one after it

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.read_all()

    def read_all(self) -> None:
        """One pass: every server read in turn. Its readings share one instant (the pass's
        middle: a pass of a few servers takes milliseconds), since memory is summed over
        the servers of one pass."""
        started = time.time()
        readings: list[tuple[int, str, float, int]] = []
        for index, (name, url) in enumerate(self.urls.items()):
            try:
                cpu_s, rss = read_process_metrics(url)
            except ScrapeError as exc:
                self.errors.append(str(exc))
                continue
            if cpu_s + self._offset[name] < self._last.get(name, 0.0):
                # the counter went back: the server restarted; count on from where it was
                self._offset[name] = self._last[name]
            cpu_s += self._offset[name]
            self._last[name] = cpu_s
            readings.append((index, name, cpu_s, rss))
        at = (started + time.time()) / 2
        self.samples.extend(Sample(at, SYSTEM, -(index + 1), name, cpu_s, rss_bytes=rss,
                                   memory_epoch_s=at) for index, name, cpu_s, rss in readings)

    def readings_in(self, start_s: float, end_s: float) -> dict[str, int]:
        """How many readings each server has in [start_s, end_s] (epoch seconds)."""
        counts = {name: 0 for name in self.urls}
        for sample in self.samples:
            if start_s <= sample.t_epoch_s <= end_s:
                counts[sample.name] += 1
        return counts
