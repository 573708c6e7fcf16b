"""Billing run as two replicas: both take checkouts, and killing one's process group leaves
checkouts succeeding, apart from the few in flight to it, with no money made or lost."""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass

import psutil

from bench.system.launcher import ServerProcess, is_ready, launch
from shop.billing.service import MAX_TOPUP_CENTS
from shop.placement import load_topology
from tests.contract.conftest import User
from tests.placements import TEST_SETTINGS, HttpApi

SHOPPERS = 4  # each checks out one at a time: at most this many checkouts are in flight
BOTH_UP_S = 1.5  # checking out with both replicas up
BEFORE_KILL_S = 0.5
AFTER_KILL_S = 3.0
SETTLED_S = 0.5  # after the kill, every checkout started this much later must succeed
TOPUPS = 5  # of MAX_TOPUP_CENTS each: enough for the cheapest lamp all along


@dataclass
class Attempt:
    key: str
    started: float  # time.monotonic()
    status: int
    receipt: dict | None


class Shopper:
    """A user with its own HTTP session, checking out one item at a time."""

    def __init__(self, base_url: str, sku: str, price: int) -> None:
        self.user = User(HttpApi(base_url), "rep")
        for _ in range(TOPUPS):
            status, body = self.user.call("POST", "/billing/topup", {"amount_cents": MAX_TOPUP_CENTS})
            assert status == 200, body
        self.sku, self.price = sku, price
        self.remaining = self.topped_up = TOPUPS * MAX_TOPUP_CENTS
        self.attempts: list[Attempt] = []

    def checkout(self, key: str | None = None) -> Attempt:
        key = key or uuid.uuid4().hex
        started = time.monotonic()
        status, body = self.user.checkout([{"sku": self.sku, "qty": 1}], key)
        attempt = Attempt(key, started, status, body if status == 201 else None)
        if attempt.receipt:
            self.remaining = attempt.receipt["balance_cents"]
        return attempt

    def shop_until(self, stop: threading.Event) -> None:
        # Stop well before the money runs out: a checkout that failed here may have been
        # paid for on the killed replica, so ``remaining`` can be a few prices too high.
        while not stop.is_set() and self.remaining > 10 * self.price:
            self.attempts.append(self.checkout())


def shop_for(shoppers: list[Shopper], seconds: float, during=None) -> None:
    """Every shopper checks out in its own thread for ``seconds``; ``during()`` (if given)
    runs in this thread meanwhile, its result returned."""
    stop = threading.Event()
    threads = [threading.Thread(target=s.shop_until, args=(stop,)) for s in shoppers]
    for thread in threads:
        thread.start()
    try:
        if during is not None:
            during()
        time.sleep(seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def cpu_seconds(server: ServerProcess) -> float:
    """CPU time of a server's gunicorn master and workers."""
    total = 0.0
    master = psutil.Process(server.pid)
    for proc in [master, *master.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def test_checkouts_survive_a_billing_replica_killed_mid_stream():
    with launch(load_topology("microservices-billing-x2"), TEST_SETTINGS) as shop:
        first, second = shop.replicas("billing")
        assert (first.name, second.name) == ("billing", "billing#2")
        assert first.pid != second.pid and second.log_path.name == "billing#2.log"
        assert shop.deployment.urls_of("billing") == [first.url, second.url]
        assert is_ready(first.url) and is_ready(second.url)

        probe = User(HttpApi(shop.base_url), "probe")
        found = min(probe.call("GET", "/search?q=lamp&limit=50")[1]["results"],
                    key=lambda hit: hit["price_cents"])
        shoppers = [Shopper(shop.base_url, found["sku"], found["price_cents"])
                    for _ in range(SHOPPERS)]

        # Both replicas up: no errors, and the gateway spreads checkouts over both.
        cpu_before = [cpu_seconds(first), cpu_seconds(second)]
        shop_for(shoppers, BOTH_UP_S)
        used = [cpu_seconds(first) - cpu_before[0], cpu_seconds(second) - cpu_before[1]]
        both_up = [a for s in shoppers for a in s.attempts]
        done_before = [len(s.attempts) for s in shoppers]
        assert both_up and all(a.status == 201 for a in both_up)
        assert min(used) > 0.2 * sum(used), f"CPU seconds per replica: {used}"

        # Kill the second replica's process group (its master and workers) mid-stream.
        killed_at: list[float] = []

        def kill_second() -> None:
            time.sleep(BEFORE_KILL_S)
            os.killpg(second.pid, signal.SIGKILL)  # that one group only
            killed_at.append(time.monotonic())

        shop_for(shoppers, AFTER_KILL_S, during=kill_second)
        assert second.popen.wait(10) == -signal.SIGKILL and first.popen.poll() is None

        attempts = [a for s, n in zip(shoppers, done_before) for a in s.attempts[n:]]
        failed = [a for a in attempts if a.status != 201]
        after = [a for a in attempts if a.started > killed_at[0] + SETTLED_S]
        # Only checkouts in flight to the killed replica may fail: one per shopper at most.
        assert len(failed) <= SHOPPERS, f"{len(failed)} of {len(attempts)} checkouts failed"
        assert all(a.status == 503 for a in failed), [a.status for a in failed]
        assert len(after) >= 10 and all(a.status == 201 for a in after)

        # A failed checkout may have been paid on the killed replica before it died: its
        # retry with the same key replays that order or, if it never happened, makes it.
        for shopper in shoppers:
            for attempt in shopper.attempts:
                if attempt.status != 201:
                    retried = shopper.checkout(attempt.key)
                    assert retried.status == 201, retried
                    attempt.status, attempt.receipt = retried.status, retried.receipt

        # Money is conserved: each top-up is the balance plus the orders, each paid once.
        for shopper in shoppers:
            orders = {a.receipt["order_id"]: a.receipt["total_cents"] for a in shopper.attempts}
            assert len(orders) == len(shopper.attempts)  # one order per key
            balance = shopper.user.call("GET", "/billing/balance")[1]["balance_cents"]
            assert balance + sum(orders.values()) == shopper.topped_up


def test_a_process_table_sets_its_own_workers_and_threads(tmp_path):
    """Per-process sizes override the launch's (1 worker, 8 threads in TEST_SETTINGS)."""
    path = tmp_path / "sized.toml"
    path.write_text('gateway = true\n'
                    '[process.front]\ncomponents = ["auth", "search"]\nworkers = 2\nthreads = 3\n'
                    '[process.back]\ncomponents = ["billing", "notify"]\nreplicas = 2\n')
    with launch(load_topology(path), TEST_SETTINGS) as shop:
        sizes = {}
        for name, server in shop.processes.items():
            master = psutil.Process(server.pid)
            args = master.cmdline()
            sizes[name] = (len(master.children()), args[args.index("--threads") + 1])
        assert sizes == {"front": (2, "3"), "back": (1, "8"), "back#2": (1, "8"),
                         "gateway": (1, "8")}
        status, _ = User(HttpApi(shop.base_url)).call("GET", "/billing/balance")
        assert status == 200
