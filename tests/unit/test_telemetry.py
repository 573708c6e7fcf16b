"""/metrics in-process: Prometheus' format, one histogram sample per request, bounded labels."""
from __future__ import annotations

import socket
import time
import uuid

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from monolith.app import create_app
from shop.errors import Unavailable
from shop.events import PaymentCaptured
from shop.hops import HopClient
from shop.notify.service import SCHEMA as NOTIFY_SCHEMA
from shop.notify.service import NotifyService
from shop.placement import prepare_storage
from shop.telemetry import Telemetry
from tests.contract.conftest import User
from tests.placements import InProcessApi, unit_deployment

REQUESTS = "seambench_http_request_duration_seconds"


def scrape(app: Flask) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics, by (sample name, its labels), via prometheus_client's parser."""
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for s in family.samples}


def count(samples: dict, route: str, method: str, status: int) -> float:
    labels = frozenset({"route": route, "method": method, "status": str(status)}.items())
    return samples.get((f"{REQUESTS}_count", labels), 0.0)


@pytest.fixture
def app(tmp_path):
    """The monolith in-process: no PROMETHEUS_MULTIPROC_DIR, so the app's own registry."""
    deployment = unit_deployment(tmp_path, "monolith")
    prepare_storage(deployment)
    app = create_app(deployment)
    yield app
    app.extensions["seambench.shop"].close()


def test_each_request_is_one_observation_under_its_route_rule_not_its_path(app):
    api = InProcessApi(app)
    before = scrape(app)
    k = 7
    for i in range(k):
        assert api.call("GET", f"/billing/orders/order-{i}")[0] == 401  # no token: a 4xx
    after = scrape(app)
    route = "/billing/orders/<order_id>"
    assert count(after, route, "GET", 401) - count(before, route, "GET", 401) == k
    routes = {dict(labels).get("route") for _, labels in after}
    assert not any(r and "order-" in r for r in routes)  # never the raw path


def test_a_4xx_is_counted_with_its_status_and_odd_requests_under_bounded_labels(app):
    api = InProcessApi(app)
    assert api.call("GET", "/chain?k=0")[0] == 401  # no bearer token
    assert api.call("GET", "/healthz")[0] == 200
    assert api.call("GET", "/no/such/path")[0] == 404
    assert api.call("BREW", "/healthz")[0] == 405
    samples = scrape(app)
    assert count(samples, "/chain", "GET", 401) == 1
    assert count(samples, "/healthz", "GET", 200) >= 1
    assert count(samples, "unmatched", "GET", 404) == 1
    assert count(samples, "unmatched", "other", 405) == 1  # no rule for BREW, no label for it


def test_a_checkout_notification_is_counted_and_its_lag_observed_once(app):
    user = User(InProcessApi(app))
    sku = user.call("GET", "/search?q=lamp&limit=1")[1]["results"][0]
    user.call("POST", "/billing/topup", {"amount_cents": 2 * sku["price_cents"]})
    key = uuid.uuid4().hex
    for _ in range(2):  # the replay stores nothing new
        assert user.checkout([{"sku": sku["sku"], "qty": 1}], key)[0] in (200, 201)
    samples = scrape(app)
    assert samples[("seambench_notifications_total", frozenset())] == 1
    assert samples[("seambench_notification_lag_seconds_count", frozenset())] == 1
    assert 0 <= samples[("seambench_notification_lag_seconds_sum", frozenset())] < 5
    # The monolith has no outbox: no backlog gauge to report.
    assert not any(name.startswith("seambench_outbox") for name, _ in samples)


def test_a_rolled_back_notification_is_not_observed(db):
    """Delivered inside a checkout's transaction that then fails: nothing was stored."""
    db.apply_schema(NOTIFY_SCHEMA)
    lags: list[float] = []
    notify = NotifyService(db, on_stored=lags.append)

    def event(n: int) -> PaymentCaptured:
        return PaymentCaptured(f"e{n}", f"o{n}", "u1", 1234, time.time())

    with pytest.raises(RuntimeError):
        with db.transaction():
            assert notify.deliver(event(1)) is True
            raise RuntimeError("abort")
    assert lags == []
    assert notify.deliver(event(2)) is True and notify.deliver(event(2)) is False
    assert len(lags) == 1 and lags[0] >= 0


def test_the_hop_observer_sees_each_send_and_counts_no_answer_as_an_error():
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    telemetry = Telemetry()
    seen: list[tuple[float, int | None]] = []
    counted = telemetry.hop_observer("billing")

    def observer(seconds: float, status: int | None) -> None:
        seen.append((seconds, status))
        counted(seconds, status)

    hop = HopClient(f"http://127.0.0.1:{port}", "cred", name="billing", observer=observer)
    with pytest.raises(Unavailable):
        hop.call("/x", {}, idempotent=True)
    assert len(seen) == 1 and seen[0][1] is None and seen[0][0] >= 0
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(telemetry.exposition().decode())
               for s in f.samples}
    assert samples[("seambench_hop_duration_seconds_count", (("dependency", "billing"),))] == 1
    assert samples[("seambench_hop_errors_total",
                    (("dependency", "billing"), ("error", "no_answer")))] == 1
    assert samples[("seambench_hop_errors_total",
                    (("dependency", "billing"), ("error", "server_error")))] == 0
