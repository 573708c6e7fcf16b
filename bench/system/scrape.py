"""CPU and memory of servers the harness cannot see, read from their Prometheus ``/metrics``.

A deployed placement (``seambench run --target``) runs on containers or on a cluster: its
processes are not ours to read in ``/proc``. Each of its servers reports its whole use on
``/metrics`` under Prometheus' standard names (the shop's are shop/serverusage.py's):
``process_cpu_seconds_total`` (CPU seconds, master and workers) and
``process_resident_memory_bytes`` (RSS, bytes). ``MetricsSampler`` reads them every
``period_s`` on a thread of its own and turns each reading into a ``Sample`` of the group
``system``, so ``window_usage`` gives a step's CPU and memory as it does for local processes.

What this measures, and what it cannot:
* CPU is exact to a clock tick (10 ms) per process and per reading. A window's CPU is the
  mean rate between the first and last readings inside it, times the window
  (``window_samples``): exact under steady load, which a valid step is.
* Reading costs the server CPU (an HTTP request: ~2 ms here even for the two metrics
  alone), counted in its figures: at one reading per ``period_s`` = 2 s, about 1 CPU-ms
  per second per server.
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
from urllib.parse import urlencode, urlsplit

from prometheus_client.parser import text_string_to_metric_families

from bench.system.sampler import Sample
from shop.address import address_of

CPU_METRIC = "process_cpu_seconds_total"
MEMORY_METRIC = "process_resident_memory_bytes"
SCRAPE_TIMEOUT_S = 2.0
ONLY_PROCESS_METRICS = urlencode([("name[]", CPU_METRIC), ("name[]", MEMORY_METRIC)])
SYSTEM = "system"


class ScrapeError(RuntimeError):
    """A /metrics page that did not answer, or holds no process metrics."""


def read_process_metrics(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) from the /metrics page at ``url``. Raises ScrapeError."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(*address_of(url), timeout=timeout_s)
    try:
        # only these two (Prometheus' name[] filter): a whole page costs a server ~5 ms of
        # CPU, which read every 0.5 s would be a tenth of what a step measures
        conn.request("GET", f"{parts.path or '/metrics'}?{ONLY_PROCESS_METRICS}")
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

    def __init__(self, urls: Mapping[str, str], period_s: float = 2.0) -> None:
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

    def readings_in(self, start_s: float, end_s: float) -> dict[str, list[Sample]]:
        """Each server's readings in [start_s, end_s] (epoch seconds), in time order."""
        inside: dict[str, list[Sample]] = {name: [] for name in self.urls}
        for sample in sorted(self.samples, key=lambda s: s.t_epoch_s):
            if start_s <= sample.t_epoch_s <= end_s:
                inside[sample.name].append(sample)
        return inside

    def window_samples(self, start_s: float, end_s: float) -> list[Sample]:
        """Samples from which ``window_usage`` gives each server's CPU in [start_s, end_s] as
        its mean rate between its first and last readings inside the window, times the
        window (readings ``period_s`` apart cannot place the window's edges; interpolating
        towards a reading after the load stopped would take idle time for load time), and
        its memory from those readings. A server with fewer than two readings inside has
        none (``unread`` names it)."""
        out: list[Sample] = []
        for name, inside in self.readings_in(start_s, end_s).items():
            if len(inside) < 2:
                continue
            first, last = inside[0], inside[-1]
            rate = (last.cpu_s - first.cpu_s) / (last.t_epoch_s - first.t_epoch_s)
            pid = first.pid
            out.append(Sample(start_s, SYSTEM, pid, name,
                              first.cpu_s - rate * (first.t_epoch_s - start_s)))
            out.extend(inside)
            out.append(Sample(end_s, SYSTEM, pid, name, last.cpu_s + rate * (end_s - last.t_epoch_s)))
        return out

    def unread(self, start_s: float, end_s: float) -> list[str]:
        """Servers with fewer than two readings inside [start_s, end_s]."""
        return [name for name, inside in self.readings_in(start_s, end_s).items()
                if len(inside) < 2 or inside[-1].t_epoch_s <= inside[0].t_epoch_s]
