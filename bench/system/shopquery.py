"""Ask a running shop, over HTTP, what only it knows: never read its database files.

``notification_lag`` asks any process of the shop (the one hosting notify, so the lags are
read where they are stored) for ``GET /internal/observe/payment-lag`` with the deployment's
service credential (internal endpoints are not reachable through the gateway).

``shop_counts`` reads every server's ``/metrics`` (Prometheus' text format, summed over its
gunicorn workers): the requests it answered by route, and the hops it made and the ones that
failed by dependency. Two readings around a step give what happened inside the shop for the
requests the generator sent to its edge.

How many HTTP hops a chain crosses is not asked over the network: it follows from the
topology, ``shop.placement.chain_http_hops(topology, k)``.
"""
from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from hdrh.histogram import HdrHistogram
from prometheus_client.parser import text_string_to_metric_families

from bench.results import hdr
from bench.system.launcher import RunningShop
from shop.address import address_of
from shop.hops import SERVICE_HEADER
from shop.observe import PAYMENT_LAG_PATH
from shop.placement import Deployment


class ShopQueryError(RuntimeError):
    """The shop refused a question or did not answer it; the message says which and why."""


@dataclass(frozen=True)
class LagReading:
    histogram: HdrHistogram  # notification lag, µs (a lag under 1 µs recorded as 1 µs)
    payments: int  # payments captured in the window (each should be notified exactly once)
    clamped: int = 0  # lags beyond the histogram's range, recorded as its highest value

    @property
    def notified(self) -> int:
        return self.histogram.get_total_count()


def payment_lag(deployment: Deployment, start_s: float, end_s: float,
                timeout_s: float = 10.0) -> dict:
    """One answer of the payment-lag endpoint for [start_s, end_s): ``{"payments": n,
    "notified": m, "lag_us": [[lag µs, count], ...], "since", "until"}``."""
    url = deployment.urls[deployment.topology.process_of("notify")]
    target = f"{PAYMENT_LAG_PATH}?{urlencode({'since': repr(start_s), 'until': repr(end_s)})}"
    return json.loads(_get(url, target, {SERVICE_HEADER: deployment.service_credential}, timeout_s))


def _get(url: str, target: str, headers: dict[str, str], timeout_s: float) -> bytes:
    """The body of ``GET url+target`` on a fresh connection. Raises ShopQueryError for no
    answer or a status other than 200 (with the start of the body, which says why)."""
    conn = http.client.HTTPConnection(*address_of(url), timeout=timeout_s)
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ShopQueryError(f"GET {url}{target.split('?')[0]}: no answer ({exc!r})") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise ShopQueryError(f"GET {url}{target}: HTTP {response.status}: "
                             f"{body[:300].decode(errors='replace')}")
    return body


def notification_lag(shop: RunningShop, start_s: float, end_s: float, settle_s: float = 5.0,
                     poll_s: float = 0.1) -> LagReading:
    """The lag of every notification for a payment captured in [start_s, end_s) (seconds
    since the epoch), once every such payment is notified or ``settle_s`` has passed
    (then the payments not yet notified are missing from the histogram: compare
    ``payments`` with ``notified``)."""
    deadline = time.monotonic() + settle_s
    while True:
        answer = payment_lag(shop.deployment, start_s, end_s)
        if answer["notified"] >= answer["payments"] or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    histogram = hdr.new_histogram()
    clamped = 0
    for lag_us, count in answer["lag_us"]:
        value = max(hdr.LOWEST_US, int(lag_us))
        if value > hdr.HIGHEST_US:
            value, clamped = hdr.HIGHEST_US, clamped + count
        if not histogram.record_value(value, count):
            raise ShopQueryError(f"could not record a lag of {lag_us} µs")
    return LagReading(histogram, int(answer["payments"]), clamped)


# Requests the harness itself makes (readiness, these readings, the lag query): not load.
HARNESS_ROUTES = frozenset({"/metrics", "/healthz", "/readyz", PAYMENT_LAG_PATH})
COUNTED = {"seambench_http_request_duration_seconds_count": ("request", "route"),
           "seambench_hop_duration_seconds_count": ("hop", "dependency"),
           "seambench_hop_errors_total": ("hop_error", "dependency"),
           "seambench_scatter_leaf_calls_total": ("leaf_call", "call"),
           # a hop's resilience events, named "dependency:event" (e.g. "billing:breaker_open")
           "seambench_hop_resilience_total": ("resilience", ("dependency", "event"))}


def counts_from_metrics(text: str) -> dict[tuple[str, str], int]:
    """(kind, name) -> count from one /metrics page: kind "request" by route (the harness's
    own routes left out), "hop" and "hop_error" by dependency; other labels summed over."""
    counts: dict[tuple[str, str], int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            kind, label = COUNTED.get(sample.name, (None, None))
            labels = label if isinstance(label, tuple) else (label,)
            name = ":".join(sample.labels.get(part, "?") for part in labels)
            if kind is None or name in HARNESS_ROUTES:
                continue
            key = (kind, name)
            counts[key] = counts.get(key, 0) + int(sample.value)
    return counts


def shop_counts(shop: RunningShop, timeout_s: float = 5.0) -> dict[str, dict[tuple[str, str], int]]:
    """Each server's (gateway, processes, replicas) counts now. Raises ShopQueryError."""
    return {name: counts_from_metrics(_get(server.url, "/metrics", {}, timeout_s)
                                      .decode(errors="replace"))
            for name, server in shop.processes.items()}


def count_rows(before: dict[str, dict[tuple[str, str], int]],
               after: dict[str, dict[tuple[str, str], int]]) -> list[dict]:
    """What changed between two readings, as rows {server, kind, name, count} (count > 0).
    A server missing from ``before`` (none should be) counts from zero."""
    rows = []
    for server, now in after.items():
        then = before.get(server, {})
        for (kind, name), count in sorted(now.items()):
            delta = count - then.get((kind, name), 0)
            if delta > 0:
                rows.append({"server": server, "kind": kind, "name": name, "count": delta})
    return rows


def outbox_backlog(shop: RunningShop, timeout_s: float = 5.0) -> int:
    """Events billing's outbox still holds undelivered, summed over the servers hosting
    billing (0 where events are delivered in billing's own transaction: no outbox).
    Raises ShopQueryError when a server does not answer."""
    billing = shop.deployment.topology.process_of("billing")
    total = 0
    for server in shop.replicas(billing):
        text = _get(server.url, "/metrics", {}, timeout_s).decode(errors="replace")
        for family in text_string_to_metric_families(text):
            if family.name == "seambench_outbox_backlog":
                total += sum(int(sample.value) for sample in family.samples)
    return total
