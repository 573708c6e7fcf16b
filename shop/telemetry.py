"""The shop's Prometheus metrics: defined per app, served at ``/metrics``.

A ``Telemetry`` is made by each app factory, never at import: tests build many apps in one
interpreter, and metrics defined once on the global registry would mix their counts (and
refuse a second definition). Each instance therefore owns its metrics and registry.

Several gunicorn workers serve one process, each with its own copy of every metric, and a
scrape reaches any one of them. With ``PROMETHEUS_MULTIPROC_DIR`` set (the launcher gives
each process a fresh directory) prometheus_client keeps every worker's values in files
there and ``/metrics`` sums the files of all workers, the dead ones included, so counts are
the process's whichever worker answers. prometheus_client picks file-backed values when it
is first imported: the variable must be in the environment the process starts with.

What is not counted in the workers is read at scrape time: ``live`` values (the outbox
backlog) come from storage every worker shares, so one worker's reading is the process's.
They are plain gauges of a collector on the scrape registry, not multiprocess gauges: a
``livesum`` would add up the same number once per worker, and ``livemax``/``mostrecent``
would show what some worker last set, at an earlier scrape.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from shop.hops import HopObserver, ResilienceObserver
from shop.serverusage import ServerUsage

if TYPE_CHECKING:
    from shop.search.leaves import ScatterObserver

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "seambench_"
# Seconds. A local request takes ~0.1 ms, a hop ~0.7 ms, a login with scrypt tens of ms;
# a dependency timing out takes the hop's read timeout (10 s).
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                     0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A relay retrying a notify that is down backs off and may wait out a 15 s lease.
LAG_BUCKETS_S = LATENCY_BUCKETS_S + (30.0, 60.0)
# Label values must be a bounded set: any other method (a client may send any token) and
# a path no rule matched are each counted under one value.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"
UNMATCHED_ROUTE = "unmatched"
LIVE_HELP = {"outbox_backlog": "Events written but neither acknowledged by notify nor rejected",
             "outbox_rejected": "Events notify refused as malformed, kept with the reason"}

LiveValues = Callable[[], Mapping[str, float]]
"""Values read at scrape time, by name without the ``seambench_`` prefix."""


class LiveGauges:
    """A collector: one gauge per value ``read`` returns when scraped."""

    def __init__(self, read: LiveValues) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        for key, value in sorted(self._read().items()):
            yield GaugeMetricFamily(PREFIX + key, LIVE_HELP.get(key, key.replace("_", " ")),
                                    value=value)


class Telemetry:
    """The metrics of one process's app. ``multiproc_dir``: where every worker's values are
    kept (None: this interpreter's values only, e.g. an app under Flask's test client)."""

    def __init__(self, multiproc_dir: str | None = None, live: LiveValues = dict) -> None:
        own = CollectorRegistry()
        self._requests = Histogram(
            f"{PREFIX}http_request_duration_seconds",
            "Time to answer a request, seconds, by Flask route rule, method and status",
            ("route", "method", "status"), registry=own, buckets=LATENCY_BUCKETS_S)
        # (route, method, status) -> its series: as bounded as the labels, read without a lock
        self._request_series: dict[tuple[str, str, int], Histogram] = {}
        self._hops = Histogram(
            f"{PREFIX}hop_duration_seconds",
            "Time of one HTTP hop to a dependency, answered or not, seconds",
            ("dependency",), registry=own, buckets=LATENCY_BUCKETS_S)
        self._hop_errors = Counter(
            f"{PREFIX}hop_errors", "Hops with no answer (no_answer) or a 5xx (server_error)",
            ("dependency", "error"), registry=own)
        self._resilience = Counter(
            f"{PREFIX}hop_resilience", "Resilience events of the hops to a dependency: retry, "
            "budget_spent, refused_circuit, refused_bulkhead, breaker_open/half_open/closed",
            ("dependency", "event"), registry=own)
        self._notifications = Counter(
            f"{PREFIX}notifications", "Notifications stored (duplicates not counted)",
            registry=own)
        self._notification_lag = Histogram(
            f"{PREFIX}notification_lag_seconds",
            "Payment committed to its notification stored, seconds", registry=own,
            buckets=LAG_BUCKETS_S)
        self._leaf_calls = Counter(
            f"{PREFIX}scatter_leaf_calls",
            "Leaf calls of /search/scatter: primaries of unhedged requests (plain), of hedged "
            "ones (hedged), and hedge backups (backup)", ("call",), registry=own)
        if multiproc_dir is None:
            self._exposed = own
        else:  # the workers' files; ``own`` then only keeps the definitions together
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=multiproc_dir)
        self._exposed.register(LiveGauges(live))
        # the whole server's CPU and memory, for a harness that can reach only /metrics
        self._exposed.register(ServerUsage())
        self.content_type = CONTENT_TYPE_LATEST

    def observe_request(self, route: str | None, method: str, status: int,
                        seconds: float) -> None:
        """One answered request: its Flask url rule (None: no rule matched), its duration."""
        key = (route or UNMATCHED_ROUTE, method if method in METHODS else OTHER_METHOD, status)
        child = self._request_series.get(key)
        if child is None:  # labels() locks and checks; a dict read is ~20x cheaper
            child = self._request_series[key] = self._requests.labels(*key[:2], str(status))
        child.observe(seconds)

    def hop_observer(self, dependency: str) -> HopObserver:
        """The observer for a HopClient to ``dependency`` (its ``name``), labels bound once
        so a hop pays only for the observations."""
        latency = self._hops.labels(dependency)
        no_answer = self._hop_errors.labels(dependency, "no_answer")
        server_error = self._hop_errors.labels(dependency, "server_error")

        def observe(seconds: float, status: int | None) -> None:
            latency.observe(seconds)
            if status is None:
                no_answer.inc()
            elif status >= 500:
                server_error.inc()

        return observe

    def resilience_observer(self, dependency: str) -> ResilienceObserver:
        """Counts the resilience events of the hops to ``dependency``."""
        def observe(event: str) -> None:
            self._resilience.labels(dependency, event).inc()

        return observe

    def scatter_observer(self) -> ScatterObserver:
        """The observer of a ``Scatter``: counts its leaf calls by kind."""
        plain, hedged, backup = (self._leaf_calls.labels(c) for c in ("plain", "hedged", "backup"))

        def observe(primaries: int, backups: int, was_hedged: bool) -> None:
            (hedged if was_hedged else plain).inc(primaries)
            if backups:
                backup.inc(backups)

        return observe

    def notification_stored(self, lag_s: float) -> None:
        """A new notification committed ``lag_s`` seconds after its payment."""
        self._notifications.inc()
        self._notification_lag.observe(lag_s)

    def exposition(self, names: Sequence[str] = ()) -> bytes:
        """Every metric in Prometheus' text format (``content_type``); only those ``names``
        asks for, when it asks (Prometheus' ``name[]`` query parameter), so a reader of two
        metrics does not pay for every worker's files being read."""
        return generate_latest(self._exposed.restricted_registry(names) if names else self._exposed)


def telemetry_from_env(live: LiveValues = dict) -> Telemetry:
    """A Telemetry in multiprocess mode when the launcher set ``PROMETHEUS_MULTIPROC_DIR``."""
    return Telemetry(os.environ.get(MULTIPROC_ENV) or None, live)
