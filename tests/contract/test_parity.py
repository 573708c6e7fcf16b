"""Parity: one seeded sequence of operations leaves the same business state in every placement."""
from __future__ import annotations

import random
import uuid

import pytest

from tests.contract.conftest import User
from tests.placements import PLACEMENTS, eventually

SEED = 20261128
STEPS = 80


class Names:
    """Replace run-specific ids (order ids) by their order of first appearance."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        for real, alias in self._ids.items():
            text = text.replace(real, alias)
        return text

    def learn(self, order_id: str) -> None:
        self._ids.setdefault(order_id, f"order#{len(self._ids)}")


def replay(api, seed: int = SEED) -> dict:
    """Run the seeded sequence; the trace of (op, status, body) and the final state."""
    rng = random.Random(seed)
    users = [User(api, prefix="parity") for _ in range(3)]
    names = Names()
    skus = [f"SKU-{n:06d}" for n in rng.sample(range(1, 10_001), 6)] + ["SKU-999999"]
    keys: list[tuple[int, str, list]] = []  # (user index, key, items) of earlier checkouts
    last_order: dict[int, str] = {}
    trace = []
    topped_up, charged = 0, {}
    for step in range(STEPS):
        who = rng.randrange(len(users))
        user = users[who]
        op = rng.choice(["topup", "checkout", "checkout", "replay", "order", "peek"])
        if op == "topup":
            amount = rng.randint(1, 200_000)
            result = user.call("POST", "/billing/topup", {"amount_cents": amount})
            topped_up += amount if result[0] == 200 else 0
        elif op in ("checkout", "replay") and (op == "checkout" or not keys):
            items = [{"sku": rng.choice(skus), "qty": rng.randint(1, 3)}
                     for _ in range(rng.randint(1, 3))]
            key = uuid.UUID(int=rng.getrandbits(128)).hex
            keys.append((who, key, items))
            result = user.checkout(items, key)
        elif op == "replay":
            owner, key, items = rng.choice(keys)
            if rng.random() < 0.3:
                items = items + [{"sku": skus[0], "qty": 1}]  # same key, other body: 422
            result = users[owner].checkout(items, key)
        elif op == "order":
            target = rng.randrange(len(users))
            order_id = last_order.get(target, "missing")
            result = user.call("GET", f"/billing/orders/{order_id}")
        else:
            result = user.call("GET", "/billing/balance")
        status, body = result
        if status == 201:
            charged[body["order_id"]] = body["total_cents"]
            names.learn(body["order_id"])
            last_order[who] = body["order_id"]
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k not in ("created_at", "detail")}
        trace.append((step, op, status, names(repr(body))))
    total_orders = len(names._ids)
    eventually(lambda: sum(len(u.call("GET", "/notify/inbox")[1]["notifications"])
                           for u in users) == total_orders, timeout_s=15)
    state = {}
    for i, user in enumerate(users):
        inbox = user.call("GET", "/notify/inbox")[1]["notifications"]
        state[i] = {"balance": user.call("GET", "/billing/balance")[1]["balance_cents"],
                    "inbox": sorted(names(n["text"]) for n in inbox)}
    return {"trace": trace, "state": state, "orders": total_orders,
            "topped_up": topped_up, "charged": sum(charged.values())}


@pytest.mark.parametrize("other", [p for p in PLACEMENTS if p != "monolith-inprocess"])
def test_same_sequence_same_state(placements, other):
    reference = replay(placements.get("monolith-inprocess")[0])
    split = replay(placements.get(other)[0])
    assert reference["orders"] >= 5, "the sequence should place several orders"
    assert {s for _, _, s, _ in reference["trace"]} >= {200, 201, 402, 404, 422}
    assert split["trace"] == reference["trace"]
    assert split["state"] == reference["state"]
    for run in (reference, split):  # money is conserved: in = balances + charged, once each
        assert run["topped_up"] == sum(u["balance"] for u in run["state"].values()) + run["charged"]
