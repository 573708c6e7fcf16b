"""The shop's answers to the harness, as logic: payments and lags of a window, the chain's
HTTP hops per topology; and bench/system/shopquery.py's wait for notifications to settle."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from bench.results import hdr
from bench.system import shopquery
from shop.billing.api import LineItem
from shop.billing.service import SCHEMA as BILLING_SCHEMA
from shop.billing.service import BillingService
from shop.chain.api import CHAIN_ORDER, MAX_HOPS
from shop.chain.client import ChainClient
from shop.chain.service import chain_path
from shop.errors import InvalidValue
from shop.events import PaymentCaptured
from shop.notify.service import SCHEMA as NOTIFY_SCHEMA
from shop.notify.service import NotifyService, rounded_us
from shop.placement import Topology, build_process, chain_http_hops, load_topology
from tests.fakes import FakeSearch, RecordingPublisher
from tests.placements import unit_deployment

# Known truth, by hand from shop/topologies/*.toml and the ring auth -> billing -> search ->
# notify -> auth: the gateway's hop to auth's process, then one per change of process.
KNOWN_HOPS = {"monolith": [0, 0, 0, 0, 0],  # no gateway; every link a function call
              "microservices": [1, 2, 3, 4, 5],  # gateway, then every link a hop
              "hybrid": [1, 1, 2, 3, 4]}  # auth -> billing stays in "core"


@pytest.mark.parametrize("name", sorted(KNOWN_HOPS))
def test_chain_http_hops_are_the_known_values(name):
    topology = load_topology(name)
    assert [chain_http_hops(topology, k) for k in range(MAX_HOPS + 1)] == KNOWN_HOPS[name]


@pytest.mark.parametrize("name", sorted(KNOWN_HOPS))
def test_the_hop_count_is_what_the_wired_processes_do(tmp_path, name):
    """Build every process of the topology in-process, join their chain stubs with a
    counting fake hop, walk the chain from where the gateway sends it: count the hops."""
    topology = load_topology(name)
    urls = {proc: f"http://127.0.0.1:{9000 + i}" for i, proc in enumerate(topology.processes)}
    built = {proc: build_process(unit_deployment(tmp_path, name, urls), proc)
             for proc in topology.processes}
    owner = {url: proc for proc, url in urls.items()}
    hops: list[str] = []

    class CountingHop:
        def __init__(self, proc: str) -> None:
            self.proc = proc

        def call(self, path: str, body: dict, *, idempotent: bool) -> dict:
            hops.append(path)
            component = path.rsplit("/", 1)[1]
            return {"path": built[self.proc].links[component].forward(body["remaining"])}

    try:
        for shop in built.values():
            for link in shop.links.values():
                after = link._resolve(link._next)
                if isinstance(after, ChainClient):
                    after._hop = CountingHop(owner[after._hop.base_url])
        start = built[topology.process_of(CHAIN_ORDER[0])]
        for k in range(MAX_HOPS + 1):
            hops.clear()
            assert start.links[CHAIN_ORDER[0]].forward(k) == chain_path(k)
            assert len(hops) + (1 if topology.gateway else 0) == chain_http_hops(topology, k)
    finally:
        for shop in built.values():
            shop.close()


def test_any_partition_counts_its_own_seams():
    topology = Topology("solo-search", {"main": ("auth", "billing", "notify"),
                                        "search": ("search",)},
                        {c: c for c in CHAIN_ORDER}, gateway=True)
    assert [chain_http_hops(topology, k) for k in range(MAX_HOPS + 1)] == [1, 1, 2, 3, 3]


@pytest.mark.parametrize("k", [-1, MAX_HOPS + 1])
def test_a_chain_longer_than_the_ring_has_no_hop_count(k):
    with pytest.raises(InvalidValue):
        chain_http_hops(load_topology("microservices"), k)


def test_chain_path_is_the_ring_from_its_start():
    assert chain_path(0) == ["auth"]
    assert chain_path(MAX_HOPS) == ["auth", "billing", "search", "notify", "auth"]


@pytest.mark.parametrize("name", sorted(KNOWN_HOPS))
def test_a_topology_comes_back_from_its_manifest_dict(name):
    topology = load_topology(name)
    stored = json.loads(json.dumps(asdict(topology)))  # how the run manifest keeps it
    assert Topology.from_dict(stored) == topology


@pytest.mark.parametrize("lag_ms,us", [(0.0, 0), (0.0004, 0), (0.0006, 1), (9.9994, 9999),
                                       (12.3456, 12350), (1234.5678, 1235000), (-1.0, 0)])
def test_lags_keep_four_significant_digits(lag_ms, us):
    assert rounded_us(lag_ms) == us


def test_payments_and_lags_of_a_half_open_window(db):
    db.apply_schema(BILLING_SCHEMA + NOTIFY_SCHEMA)
    times = iter([100.0, 101.0, 102.0])
    billing = BillingService(db, FakeSearch({"SKU-A": 100}), RecordingPublisher(),
                             clock=lambda: next(times))
    billing.topup("u1", 1000)
    for key in ("a", "b", "c"):
        billing.checkout("u1", [LineItem("SKU-A", 1)], key)
    assert [billing.payments(*w) for w in [(100, 103), (100, 102), (101, 101), (103, 200)]] \
        == [3, 2, 0, 0]
    stored = iter([100.004, 101.0123, 101.0123])
    notify = NotifyService(db, clock=lambda: next(stored))
    for i, at in enumerate([100.0, 101.0, 99.0]):
        notify.deliver(PaymentCaptured(f"e{i}", f"o{i}", "u1", 100, at))
    assert notify.lags(100, 102) == [(4000, 1), (12300, 1)]
    assert notify.lags(99, 200) == [(4000, 1), (12300, 1), (2012000, 1)]
    assert notify.lags(102, 103) == []
    for service in (billing.payments, notify.lags):
        for window in [(2, 1), (float("nan"), 1), (0, float("inf"))]:
            with pytest.raises(InvalidValue):
                service(*window)


class FakeShop:
    deployment = None


def test_the_reading_waits_until_every_payment_is_notified(monkeypatch):
    answers = iter([{"payments": 3, "notified": 1, "lag_us": [[500, 1]]},
                    {"payments": 3, "notified": 3, "lag_us": [[0, 1], [500, 1], [61_000_000, 1]]}])
    monkeypatch.setattr(shopquery, "payment_lag", lambda deployment, s, e: next(answers))
    reading = shopquery.notification_lag(FakeShop(), 1.0, 2.0, settle_s=5, poll_s=0)
    assert reading.payments == 3 and reading.notified == 3 and reading.clamped == 1
    assert reading.histogram.get_min_value() == 1  # under 1 µs: recorded as 1 µs
    assert reading.histogram.get_max_value() == reading.histogram.get_highest_equivalent_value(
        hdr.HIGHEST_US)


def test_the_reading_gives_up_after_settle_s(monkeypatch):
    calls = []

    def never_all(deployment, s, e):
        calls.append(1)
        return {"payments": 2, "notified": 1, "lag_us": [[700, 1]]}

    monkeypatch.setattr(shopquery, "payment_lag", never_all)
    reading = shopquery.notification_lag(FakeShop(), 1.0, 2.0, settle_s=0.05, poll_s=0.01)
    assert reading.payments == 2 and reading.notified == 1 and len(calls) >= 2


def test_counts_are_read_from_prometheus_text_and_differenced_per_server():
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from bench.system.shopquery import count_rows, counts_from_metrics

    registry = CollectorRegistry()
    requests = Histogram("seambench_http_request_duration_seconds", "", ["route", "method", "status"],
                         registry=registry)
    hops = Histogram("seambench_hop_duration_seconds", "", ["dependency"], registry=registry)
    errors = Counter("seambench_hop_errors_total", "", ["dependency", "error"], registry=registry)

    def reading() -> dict:
        return counts_from_metrics(generate_latest(registry).decode())

    requests.labels("/search", "GET", "200").observe(0.001)
    requests.labels("/metrics", "GET", "200").observe(0.001)  # the harness's own: left out
    before = {"gateway": reading()}
    for status in ("200", "200", "503"):
        requests.labels("/search", "GET", status).observe(0.002)  # statuses summed
    hops.labels("search").observe(0.001)
    errors.labels("search", "no_answer").inc()
    after = {"gateway": reading()}
    assert before["gateway"] == {("request", "/search"): 1}
    assert count_rows(before, after) == [
        {"server": "gateway", "kind": "hop", "name": "search", "count": 1},
        {"server": "gateway", "kind": "hop_error", "name": "search", "count": 1},
        {"server": "gateway", "kind": "request", "name": "/search", "count": 3}]
