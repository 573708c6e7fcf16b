"""Racing clients: no double charge, money conserved, each payment notified exactly once.

Bounded (a few hundred requests on loopback), a correctness test, not a benchmark. Threads
share a small pool of idempotency keys, so the same key races itself across threads and,
where a placement has two workers, across processes writing one SQLite database.
"""
from __future__ import annotations

import random
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from tests.contract.conftest import User
from tests.placements import eventually

THREADS, CALLS_PER_THREAD, USERS, KEYS = 8, 30, 3, 12


def test_racing_checkouts_and_topups(api):
    users = [User(api, prefix="race") for _ in range(USERS)]
    skus = [h["sku"] for h in users[0].call("GET", "/search?q=lamp&limit=4")[1]["results"]]
    lock = threading.Lock()
    topped_up: dict[int, int] = defaultdict(int)
    receipts: dict[tuple[int, str], set[str]] = defaultdict(set)  # (user, key) -> order ids
    totals: dict[str, tuple[int, int]] = {}  # order id -> (user, total)
    statuses: list[int] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(CALLS_PER_THREAD):
            who = rng.randrange(USERS)
            if rng.random() < 0.3:
                amount = rng.randint(10_000, 200_000)
                status, body = users[who].call("POST", "/billing/topup", {"amount_cents": amount})
                with lock:
                    statuses.append(status)
                    topped_up[who] += amount if status == 200 else 0
                continue
            key = f"key-{rng.randrange(KEYS)}"
            # the key decides the items, so a reused key always carries the same body
            items = [{"sku": skus[int(key.split("-")[1]) % len(skus)], "qty": 1}]
            status, body = users[who].checkout(items, key)
            with lock:
                statuses.append(status)
                if status == 201:
                    receipts[(who, key)].add(body["order_id"])
                    totals[body["order_id"]] = (who, body["total_cents"])

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(client, range(THREADS)))

    assert set(statuses) <= {200, 201, 402}, sorted(set(statuses))
    assert totals, "some checkouts should have succeeded"
    assert all(len(orders) == 1 for orders in receipts.values()), "a key charged twice"
    for who, user in enumerate(users):
        charged = sum(total for owner, total in totals.values() if owner == who)
        balance = user.call("GET", "/billing/balance")[1]["balance_cents"]
        assert balance == topped_up[who] - charged  # money conserved
        mine = {order for order, (owner, _) in totals.items() if owner == who}
        eventually(lambda u=user, n=len(mine): len(inbox_ids(u)) >= n)  # noqa: B008
        assert sorted(inbox_ids(user)) == sorted(mine)  # every payment notified, exactly once


def inbox_ids(user: User) -> list[str]:
    return [n["order_id"] for n in user.call("GET", "/notify/inbox")[1]["notifications"]]
