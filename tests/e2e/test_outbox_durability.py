"""Split, a payment's notification survives notify being down and its and billing's workers dying."""
from __future__ import annotations

import os
import signal
import time
import uuid
from contextlib import ExitStack

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.contract.conftest import User
from tests.placements import eventually, start


def inbox_of(user: User) -> list[dict]:
    return user.call("GET", "/notify/inbox")[1]["notifications"]


def metric(url: str, name: str) -> float:
    """The value of the unlabelled sample ``seambench_<name>`` on ``url``'s /metrics."""
    text = requests.get(url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"seambench_{name}" and not sample.labels:
                return sample.value
    raise AssertionError(f"no metric {name}")


def kill_workers(master_pid: int) -> set[int]:
    """SIGKILL every worker of a gunicorn master; their pids."""
    workers = psutil.Process(master_pid).children()
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
    return {w.pid for w in workers}


def replaced(master_pid: int, killed: set[int]) -> None:
    """Return once the master runs a worker that is not one of ``killed``."""
    eventually(lambda: [w for w in psutil.Process(master_pid).children() if w.pid not in killed],
               timeout_s=30)


@pytest.mark.parametrize("placement", ["microservices", "microservices-pg", "microservices-rabbitmq"])
def test_notifications_survive_a_paused_notify_and_killed_workers(placement):
    """On both transports (the relay posting to notify, or RabbitMQ) and both engines: notify
    paused, then billing's worker (its relay) and notify's worker (its consumer, holding
    unacked deliveries on RabbitMQ) killed: every payment is notified exactly once."""
    with ExitStack() as stack:
        api, shop = start(placement, stack)
        by_broker = shop.deployment.topology.events != "http"
        user = User(api)
        sku = user.call("GET", "/search?q=lamp&limit=1")[1]["results"][0]
        user.call("POST", "/billing/topup", {"amount_cents": 10 * sku["price_cents"]})
        notify, billing = shop.processes["notify"], shop.processes["billing"]

        os.killpg(notify.pid, signal.SIGSTOP)  # notify stops answering and consuming
        try:
            receipts = []
            for _ in range(5):
                status, receipt = user.checkout([{"sku": sku["sku"], "qty": 1}], uuid.uuid4().hex)
                assert status == 201, receipt  # checkout does not wait for notify
                receipts.append(receipt["order_id"])
            if by_broker:  # confirmed by the broker: out of the outbox, held by the queue
                eventually(lambda: metric(billing.url, "outbox_backlog") == 0, timeout_s=10)
            else:  # no ack from notify: all still in the outbox
                assert metric(billing.url, "outbox_backlog") == 5
            replaced(billing.pid, kill_workers(billing.pid))  # the relay dies mid-retry
            # Notify's worker dies stopped: what it held unacked goes back to the queue. Its
            # master, stopped too, replaces it once the group continues.
            killed = kill_workers(notify.pid)
        finally:
            os.killpg(notify.pid, signal.SIGCONT)
        replaced(notify.pid, killed)

        eventually(lambda: len(inbox_of(user)) >= 5, timeout_s=30)
        time.sleep(0.5)  # a duplicate delivery would have arrived by now
        assert sorted(n["order_id"] for n in inbox_of(user)) == sorted(receipts)  # each exactly once
        # A row the killed relay had claimed waits out its lease (TEST_SETTINGS: 2 s) before a
        # new relay retries it.
        eventually(lambda: metric(billing.url, "outbox_backlog") == 0, timeout_s=20)
        assert user.call("GET", "/billing/balance")[1]["balance_cents"] == 5 * sku["price_cents"]
