"""Billing's client stub: the ``Billing`` interface over a hop."""
from __future__ import annotations

from dataclasses import asdict

from shop.billing.api import LineItem, Order, OrderLine, Receipt
from shop.hops import HopClient


class BillingClient:
    def __init__(self, hop: HopClient) -> None:
        self._hop = hop

    def topup(self, user_id: str, amount_cents: int, idempotency_key: str | None = None) -> int:
        # With a key, billing credits once per key, so the hop may resend; without, it may not.
        body = {"user_id": user_id, "amount_cents": amount_cents, "idempotency_key": idempotency_key}
        return self._hop.call("/internal/billing/topup", body,
                              idempotent=idempotency_key is not None)["balance_cents"]

    def balance(self, user_id: str) -> int:
        body = {"user_id": user_id}
        return self._hop.call("/internal/billing/balance", body, idempotent=True)["balance_cents"]

    def checkout(self, user_id: str, items: list[LineItem], idempotency_key: str) -> Receipt:
        # The idempotency key makes a retried checkout replay instead of charging twice.
        body = {"user_id": user_id, "items": [asdict(i) for i in items],
                "idempotency_key": idempotency_key}
        return Receipt(**self._hop.call("/internal/billing/checkout", body, idempotent=True))

    def order(self, user_id: str, order_id: str) -> Order:
        data = self._hop.call("/internal/billing/order", {"user_id": user_id, "order_id": order_id},
                              idempotent=True)
        return Order(data["order_id"], [OrderLine(**line) for line in data["items"]],
                     data["total_cents"], data["created_at"])

    def payments(self, since: float, until: float) -> int:
        body = {"since": since, "until": until}
        return self._hop.call("/internal/billing/payments", body, idempotent=True)["payments"]
