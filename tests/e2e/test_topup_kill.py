"""A keyed top-up is credited exactly once, even when billing's worker is SIGKILLed under it.

The lesson of an earlier review: the gateway resent any request carrying an Idempotency-Key
when its connection to billing dropped, and top-up ignored the key, so killing billing's
worker created money. Here clients send top-ups with a key each and resend the same key
until they get an answer: half through the gateway (which resends a keyed top-up itself when
its connection to billing drops), half straight to billing (so they see the cut connections
and resend). Billing's worker is killed several times while they are in flight. Every key
must be credited once: no more, no less.
"""
from __future__ import annotations

import threading
import time
import uuid
from contextlib import ExitStack

import requests

from tests.contract.conftest import User
from tests.e2e.test_outbox_durability import kill_workers, replaced
from tests.placements import start

AMOUNT = 100
CLIENTS, KILLS = 8, 4


def test_keyed_topups_survive_killed_billing_workers_exactly_once():
    with ExitStack() as stack:
        api, shop = start("microservices", stack)
        user = User(api)
        billing = shop.processes["billing"]
        urls = [shop.base_url, billing.url]  # through the gateway, and straight to billing
        answered: list[str] = []
        retries = [0]
        lock = threading.Lock()
        kills_done = threading.Event()
        stop_at = time.monotonic() + 120  # bounded: the test ends by itself

        def client(url: str) -> None:
            session = requests.Session()
            while not kills_done.is_set():
                key = uuid.uuid4().hex
                while time.monotonic() < stop_at:  # resend the same key until it is answered
                    try:
                        r = session.post(url + "/billing/topup", json={"amount_cents": AMOUNT},
                                         timeout=15, headers={"Authorization": f"Bearer {user.token}",
                                                              "Idempotency-Key": key})
                        if r.status_code == 200:
                            with lock:
                                answered.append(key)
                            break
                    except requests.RequestException:
                        session = requests.Session()
                    with lock:
                        retries[0] += 1
                    time.sleep(0.02)

        threads = [threading.Thread(target=client, args=(urls[i % 2],)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for _ in range(KILLS):  # each kill lands while top-ups are in flight
            time.sleep(0.5)
            replaced(billing.pid, kill_workers(billing.pid))
        time.sleep(0.5)
        kills_done.set()
        for t in threads:
            t.join(150)
        assert answered and len(answered) == len(set(answered)), len(answered)
        assert retries[0] > 0  # the kills did cut requests: something had to be resent
        assert user.call("GET", "/billing/balance")[1]["balance_cents"] == AMOUNT * len(answered)
