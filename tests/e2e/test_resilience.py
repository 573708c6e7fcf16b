"""When a dependency fails, on the real split shop: the defaults (auth down: 503 fast with
Retry-After; search down: checkout fails fast; notify down: checkouts succeed and events wait
in the outbox), the breaker, the bulkhead and supervision. Each test stops the processes it
started; every fault is undone before it ends, and each waits a bounded time."""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace

import pytest
import requests

from bench.system.launcher import launch
from shop.placement import load_topology
from tests.contract.conftest import User
from tests.placements import TEST_SETTINGS, HttpApi, eventually

# Short timeouts so a stalled dependency is found out in a test's time; the rules are the
# defaults' (shop/hops.py), only scaled down.
EDGES = {"gateway->billing": {"read_timeout_s": 1.0, "breaker_failures": 3,
                              "breaker_reset_s": 1.0},
         "gateway->notify": {"read_timeout_s": 5.0},
         "*->auth": {"read_timeout_s": 0.5}}  # under the gateway's 1 s to billing: nested


@pytest.fixture(scope="module")
def supervised_shop():
    """One supervised split shop for the whole module: each test undoes its fault."""
    topology = replace(load_topology("microservices"), edges=EDGES)
    with launch(topology, replace(TEST_SETTINGS, supervise=True)) as shop:
        yield shop


@pytest.fixture
def shop(supervised_shop):
    """The module's shop, healthy again after each test: every process answering and every
    path through the shop answering 200, so no breaker a fault opened is still open."""
    yield supervised_shop
    user = User(HttpApi(supervised_shop.base_url))
    paths = ("/billing/balance", "/notify/inbox", "/search?q=lamp&limit=1")
    eventually(lambda: not supervised_shop.dead()
               and all(user.call("GET", path)[0] == 200 for path in paths), timeout_s=30,
               interval_s=0.2)


@contextmanager
def down(shop, name: str, seconds: float = 60.0):
    """``name`` killed and kept down (the supervisor restarts it after the block)."""
    proc = shop.processes[name]
    shop.supervisor.hold(name, time.time() + seconds)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.popen.wait(5)
    try:
        yield
    finally:
        shop.supervisor.release(name)
        eventually(lambda: (r := shop.supervisor.restarts_of(name)) and r[-1].ready_at,
                   timeout_s=30)


@contextmanager
def paused(shop, name: str):
    pid = shop.processes[name].pid
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def funded(shop) -> User:
    user = User(HttpApi(shop.base_url))
    assert user.call("POST", "/billing/topup", {"amount_cents": 10_000_000})[0] == 200
    return user


def checkout(user: User, sku: str) -> tuple[int, dict]:
    return user.checkout([{"sku": sku, "qty": 1}], uuid.uuid4().hex)


def test_a_dead_service_is_restarted_on_its_port_and_the_shop_recovers(shop):
    user = funded(shop)
    sku = user.call("GET", "/search?q=lamp&limit=1")[1]["results"][0]["sku"]
    billing = shop.processes["billing"]
    url, pid = billing.url, billing.pid
    os.killpg(pid, signal.SIGKILL)
    restart = eventually(lambda: (r := shop.supervisor.restarts_of("billing")) and
                         r[-1].ready_at and r[-1], timeout_s=30)
    assert shop.processes["billing"].url == url and shop.processes["billing"].pid != pid
    assert restart.exit_code == -signal.SIGKILL and restart.ready_at > restart.died_at
    assert not shop.dead()
    status, body = eventually(lambda: (r := checkout(user, sku))[0] == 201 and r, timeout_s=10)
    assert body["order_id"]


def test_auth_down_answers_503_fast_with_retry_after_naming_auth(shop):
    user = User(HttpApi(shop.base_url))
    with down(shop, "auth"):
        for path in ("/billing/balance", "/notify/inbox", "/search?q=lamp"):
            r, took = timed(lambda p=path: requests.get(
                shop.base_url + p, headers={"Authorization": f"Bearer {user.token}"}, timeout=10))
            assert r.status_code == 503 and took < 0.5, (path, r.status_code, took)
            assert r.json()["error"] == "unavailable" and "auth" in r.json()["detail"]
            assert int(r.headers["Retry-After"]) >= 1


def test_a_paused_auth_is_named_by_every_503_and_fails_fast_once_the_breaker_opens(shop):
    """Finding 3: with auth paused every authenticated call took 10 s and some 503s named
    the wrong service. Timeouts nest (a service gives up on auth before the gateway gives up
    on the service), so each 503 names auth; after five timeouts the breaker answers at once."""
    user = User(HttpApi(shop.base_url))
    headers = {"Authorization": f"Bearer {user.token}"}
    with paused(shop, "auth"):
        answers = [timed(lambda p=p: requests.get(shop.base_url + p, headers=headers,
                                                  timeout=15))
                   for p in ["/billing/balance"] * 7 + ["/notify/inbox"]]
    for r, took in answers:
        assert r.status_code == 503 and "auth" in r.json()["detail"], r.text
        assert took < 1.0 and "Retry-After" in r.headers
    assert answers[-2][1] < 0.1, answers  # billing's breaker to auth is open by then


def test_search_down_fails_checkout_fast_naming_search(shop):
    user = funded(shop)
    sku = user.call("GET", "/search?q=lamp&limit=1")[1]["results"][0]["sku"]
    balance = user.call("GET", "/billing/balance")[1]["balance_cents"]
    with down(shop, "search"):
        (status, body), took = timed(lambda: checkout(user, sku))
        assert status == 503 and took < 0.5 and "search" in body["detail"], (status, body, took)
    assert user.call("GET", "/billing/balance")[1]["balance_cents"] == balance  # nothing charged


def test_notify_down_checkouts_succeed_and_events_wait_in_the_outbox(shop):
    user = funded(shop)
    sku = user.call("GET", "/search?q=lamp&limit=1")[1]["results"][0]["sku"]
    orders = []
    with down(shop, "notify"):
        for _ in range(3):
            status, body = checkout(user, sku)
            assert status == 201, body
            orders.append(body["order_id"])
        metrics = requests.get(shop.processes["billing"].url + "/metrics", timeout=5).text
        assert "seambench_outbox_backlog 3.0" in metrics
    inbox = eventually(lambda: {n["order_id"] for n in
                                user.call("GET", "/notify/inbox")[1]["notifications"]}
                       >= set(orders), timeout_s=20)
    assert inbox


def test_breaker_fails_fast_while_billing_is_paused_and_closes_after(shop):
    user = User(HttpApi(shop.base_url))
    headers = {"Authorization": f"Bearer {user.token}"}
    get = lambda: requests.get(shop.base_url + "/billing/balance", headers=headers, timeout=10)
    calls = 30
    with paused(shop, "billing"):
        first = [timed(get) for _ in range(3)]  # three read timeouts open it
        assert all(r.status_code == 503 and took >= 0.9 for r, took in first)
        later = [timed(get) for _ in range(calls)]
        refused = [r for r, took in later if "circuit open" in r.json()["detail"]]
        assert all(r.status_code == 503 for r, _ in later)
        # one half-open trial a reset period (1 s) may reach billing; the rest fail fast
        reached = calls - len(refused)
        spent = sum(took for _, took in later)
        assert reached <= 1 + spent / 1.0, (reached, spent)
        assert sorted(took for _, took in later)[calls // 2] < 0.05
    recovered_at = time.monotonic()
    eventually(lambda: get().status_code == 200, timeout_s=5)
    assert time.monotonic() - recovered_at < 1.0 + 1.5  # reset timeout plus a margin


def test_bulkhead_keeps_search_and_checkout_fast_while_notify_is_paused(shop):
    user = funded(shop)
    headers = {"Authorization": f"Bearer {user.token}"}
    sku = user.call("GET", "/search?q=lamp&limit=1")[1]["results"][0]["sku"]
    answers: list[int] = []
    measuring = threading.Event()

    def inbox() -> None:
        try:
            answers.append(requests.get(shop.base_url + "/notify/inbox", headers=headers,
                                        timeout=15).status_code)
        except requests.RequestException:
            answers.append(0)

    def keep_eight_inbox_calls_in_flight() -> None:
        callers: list[threading.Thread] = []
        while measuring.is_set():
            callers = [t for t in callers if t.is_alive()]
            while len(callers) < 8:
                callers.append(threading.Thread(target=inbox))
                callers[-1].start()
            time.sleep(0.02)
        for t in callers:
            t.join(20)

    with paused(shop, "notify"):
        measuring.set()
        pressure = threading.Thread(target=keep_eight_inbox_calls_in_flight)
        pressure.start()
        time.sleep(0.5)  # the inbox calls hold what the bulkhead lets them
        took = []
        for _ in range(50):
            took.append(timed(lambda: requests.get(shop.base_url + "/search?q=lamp",
                                                   headers=headers, timeout=10))[1])
            took.append(timed(lambda: checkout(user, sku))[1])
        measuring.clear()
    pressure.join(30)
    took.sort()
    # Without the bulkhead the gateway's 8 threads all wait on notify: a search then
    # waits seconds for a thread (measured: 4.5 s for the first one).
    assert took[98] < 0.05 and took[-1] < 0.25, took[-5:]
    assert answers.count(503) >= 8, answers  # refused by the bulkhead or timed out: no hang
