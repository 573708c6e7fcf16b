"""Split, a payment's notification survives notify being down and billing's worker dying."""
from __future__ import annotations

import os
import signal
import time
import uuid
from contextlib import ExitStack

import psutil
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


def test_notifications_survive_a_paused_notify_and_a_killed_billing_worker():
    with ExitStack() as stack:
        api, shop = start("microservices", stack)
        user = User(api)
        sku = user.call("GET", "/search?q=lamp&limit=1")[1]["results"][0]
        user.call("POST", "/billing/topup", {"amount_cents": 10 * sku["price_cents"]})
        notify, billing = shop.processes["notify"], shop.processes["billing"]

        os.killpg(notify.pid, signal.SIGSTOP)  # notify stops answering: no ack for the relay
        try:
            receipts = []
            for _ in range(5):
                status, receipt = user.checkout([{"sku": sku["sku"], "qty": 1}], uuid.uuid4().hex)
                assert status == 201, receipt  # checkout does not wait for notify
                receipts.append(receipt["order_id"])
            assert metric(billing.url, "outbox_backlog") == 5
            workers = psutil.Process(billing.pid).children()
            for worker in workers:  # the relay dies with its worker, mid-retry
                worker.send_signal(signal.SIGKILL)
            eventually(lambda: [w for w in psutil.Process(billing.pid).children()
                                if w.pid not in {x.pid for x in workers}], timeout_s=30)
        finally:
            os.killpg(notify.pid, signal.SIGCONT)

        eventually(lambda: len(inbox_of(user)) >= 5, timeout_s=30)
        time.sleep(0.5)  # a duplicate delivery would have arrived by now
        assert sorted(n["order_id"] for n in inbox_of(user)) == sorted(receipts)  # each exactly once
        # A row the killed relay had claimed waits out its lease (15 s) before a new relay retries.
        eventually(lambda: metric(billing.url, "outbox_backlog") == 0, timeout_s=40)
        assert user.call("GET", "/billing/balance")[1]["balance_cents"] == 5 * sku["price_cents"]
