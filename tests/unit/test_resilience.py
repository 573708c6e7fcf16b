"""Breaker, bulkhead, retry budget and the per-edge settings: each rule on a fake clock or a
real loopback socket, so every assertion can fail."""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import pytest

from shop.errors import Unavailable
from shop.hops import EDGE_DEFAULTS, HopClient, HopSettings, edge_settings
from shop.resilience import CLOSED, HALF_OPEN, OPEN, Bulkhead, CircuitBreaker, RetryBudget
from shop.topology import TopologyError, parse_topology
from tests.unit.test_hops import response, serve


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_probes_once():
    clock, moves = Clock(), []
    breaker = CircuitBreaker(3, 2.0, lambda a, b: moves.append((a, b)), clock)
    for ok in (False, False, True, False, False):  # a success resets the count
        assert breaker.admit() is None
        breaker.record(ok)
    assert breaker.state == CLOSED
    assert breaker.admit() is None
    breaker.record(False)
    assert breaker.state == OPEN and moves == [(CLOSED, OPEN)]
    clock.now += 1.5
    refusal = breaker.admit()
    assert refusal is not None and refusal.retry_after_s == pytest.approx(0.5)
    clock.now += 0.5
    assert breaker.admit() is None  # the one trial call
    assert breaker.state == HALF_OPEN
    assert breaker.admit() is not None  # everyone else still refused while it is out
    breaker.record(False)  # the trial failed: open for another reset_s
    assert breaker.state == OPEN
    clock.now += 2.0
    assert breaker.admit() is None
    breaker.record(True)
    assert breaker.state == CLOSED
    assert moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN),
                     (HALF_OPEN, CLOSED)]


def test_a_cancelled_trial_lets_another_through():
    clock = Clock()
    breaker = CircuitBreaker(1, 1.0, clock=clock)
    breaker.admit()
    breaker.record(False)
    clock.now += 1.0
    assert breaker.admit() is None
    breaker.cancel()
    assert breaker.admit() is None


def enter_in_thread(bulkhead: Bulkhead) -> threading.Event:
    """A call in flight from another thread (a place is per calling thread), which stays
    alive until the returned event is set (a dead thread's id may be reused)."""
    entered, finish = threading.Event(), threading.Event()

    def call() -> None:
        bulkhead.enter()
        entered.set()
        finish.wait(5)
        bulkhead.leave()

    threading.Thread(target=call, daemon=True).start()
    assert entered.wait(2)
    return finish


def test_bulkhead_waits_for_a_place_while_the_dependency_is_healthy():
    clock = Clock()
    bulkhead = Bulkhead(2, 0.05, stall_s=1.0, clock=clock)
    first = enter_in_thread(bulkhead)
    enter_in_thread(bulkhead)
    started = time.monotonic()
    refusal = bulkhead.enter()
    assert refusal is not None and refusal.reason == "bulkhead full (2 calls in flight)"
    assert 0.04 <= time.monotonic() - started < 1.0  # it waited
    threading.Timer(0.01, first.set).start()  # that call ends, in its own thread
    assert bulkhead.enter() is None  # a place freed while it waited


def test_a_stalled_dependency_is_refused_at_once():
    clock = Clock()
    bulkhead = Bulkhead(2, 5.0, stall_s=1.0, clock=clock)
    enter_in_thread(bulkhead)
    enter_in_thread(bulkhead)
    clock.now += 1.0  # the oldest call has taken 1 s
    started = time.monotonic()
    refusal = bulkhead.enter()
    assert refusal is not None and "stalled" in refusal.reason
    assert time.monotonic() - started < 0.5  # not the 5 s wait


def test_retry_budget_is_a_share_of_calls_plus_a_floor():
    clock = Clock()
    budget = RetryBudget(0.2, min_per_s=1.0, ttl_s=10.0, clock=clock)
    assert budget.withdraw() and not budget.withdraw()  # the floor's first second
    for _ in range(10):
        budget.deposit()
    assert budget.withdraw() and budget.withdraw() and not budget.withdraw()  # 10 calls: 2
    clock.now += 3.0
    assert sum(budget.withdraw() for _ in range(10)) == 3  # the floor refills 1 a second


def refusing_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()  # nothing listens: every connect is refused
    return url


def test_idempotent_calls_are_retried_with_backoff_and_the_breaker_opens():
    events: list[str] = []
    hop = HopClient(refusing_url(), "cred", HopSettings(retries=2, backoff_ms=1, breaker_failures=4,
                                                        breaker_reset_s=30))
    hop.on_event = events.append
    with pytest.raises(Unavailable, match="cannot connect") as caught:
        hop.call("/x", {}, idempotent=True)
    assert caught.value.retry_after_s == 1.0
    assert events == ["retry", "retry"]  # three attempts
    with pytest.raises(Unavailable):
        hop.call("/x", {}, idempotent=False)  # not idempotent: one attempt, the 4th failure
    assert events[-1] == "breaker_open"
    started = time.perf_counter()
    with pytest.raises(Unavailable, match="circuit open, not called") as refused:
        hop.call("/x", {}, idempotent=True)
    assert time.perf_counter() - started < 0.05  # fails fast, no retry of a refusal
    assert refused.value.never_sent and 29 < refused.value.retry_after_s <= 30
    assert events[-1] == "refused_circuit"


def test_a_timeout_is_never_retried_and_names_the_dependency():
    def silent(conn, seen):
        seen.append(conn.recv(65536))
        time.sleep(1.0)

    with serve(silent) as (url, seen):
        hop = HopClient(url, "cred", HopSettings(read_timeout_s=0.2, retries=3), name="notify")
        with pytest.raises(Unavailable, match="notify is unavailable: no answer"):
            hop.call("/x", {}, idempotent=True)
        assert len(seen) == 1


def test_retry_after_of_an_answer_is_passed_on():
    def busy(conn, seen):
        conn.recv(65536)
        payload = response(503, {"error": "unavailable", "detail": "x"})
        conn.sendall(payload.replace(b"\r\n\r\n", b"\r\nRetry-After: 7\r\n\r\n", 1))

    with serve(busy) as (url, _):
        answer = HopClient(url, "cred").send("GET", "/x", None, {}, idempotent=True)
        assert (answer.status, answer.retry_after) == (503, "7")


def test_edge_settings_most_specific_wins_field_by_field():
    base = HopSettings()
    edges = {"*->notify": {"read_timeout_s": 3.0, "retries": 1},
             "gateway->notify": {"retries": 0}}
    to_notify = edge_settings(base, edges, "gateway", "notify")
    assert (to_notify.read_timeout_s, to_notify.retries) == (3.0, 0)
    assert edge_settings(base, edges, "billing", "auth") == base
    assert edge_settings(base, {}, "gateway", "leaf").breaker_failures == 0
    assert edge_settings(base, {}, "gateway", "leaf").read_timeout_s == \
        EDGE_DEFAULTS["*->leaf"]["read_timeout_s"]


def test_the_gateway_waits_longer_than_the_service_waits_on_its_own_dependencies():
    from shop.placement import Deployment, load_topology
    split = Deployment(load_topology("microservices"), "/tmp/x", "c", "s")
    assert split.hop_settings("gateway", "billing").read_timeout_s == 5.0  # auth, then search
    assert split.hop_settings("gateway", "notify").read_timeout_s == 3.0  # auth: 2 s + 1
    assert split.hop_settings("gateway", "auth").read_timeout_s == 3.0  # the floor
    assert split.hop_settings("billing", "auth").read_timeout_s == 2.0
    hybrid = Deployment(load_topology("hybrid"), "/tmp/x", "c", "s")  # core: auth + billing
    assert hybrid.topology.downstream("core") == ["search"]
    assert hybrid.hop_settings("gateway", "core").read_timeout_s == 3.0
    slow_auth = replace(split.topology, edges={"*->auth": {"read_timeout_s": 4.0}})
    told = replace(split.topology, edges={"gateway->notify": {"read_timeout_s": 7.0}})
    assert Deployment(slow_auth, "/tmp/x", "c", "s").hop_settings(
        "gateway", "billing").read_timeout_s == 7.0  # 4 + 2 + 1
    assert Deployment(told, "/tmp/x", "c", "s").hop_settings(
        "gateway", "notify").read_timeout_s == 7.0  # a table's own word stands


@pytest.mark.parametrize("edge, why", [
    ({"gateway->nowhere": {"retries": 1}}, "CALLER->CALLEE"),
    ({"gateway-notify": {"retries": 1}}, "CALLER->CALLEE"),
    ({"*->notify": {"retries": 1.5}}, "whole number"),
    ({"*->notify": {"read_timeout_s": -1}}, "from 0 to 3600"),
    ({"*->notify": {"read_timeout_s": float("inf")}}, "from 0 to 3600"),
    ({"*->notify": {"retries": float("inf")}}, "from 0 to 10000"),
    ({"*->notify": {"bulkhead_share": 1.5}}, "from 0 to 1"),
    ({"*->notify": {"added_latency_ms": 5}}, "unknown key"),
    ({"*->notify": 3}, "must be a table"),
])
def test_bad_edge_tables_are_named(edge, why):
    doc = {"process": {"a": {"components": ["auth", "billing"]},
                       "notify": {"components": ["search", "notify"]}},
           "gateway": True, "edge": edge}
    with pytest.raises(TopologyError, match=why):
        parse_topology(doc, "t.toml")


def test_a_good_edge_table_is_kept():
    doc = {"process": {"a": {"components": ["auth", "billing"]},
                       "notify": {"components": ["search", "notify"]}},
           "gateway": True, "edge": {"a->notify": {"read_timeout_s": 1, "retries": 0}}}
    assert parse_topology(doc, "t.toml").edges == {"a->notify": {"read_timeout_s": 1.0,
                                                                 "retries": 0}}
