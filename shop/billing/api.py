"""Billing: wallets, idempotent checkout, orders. Money is integer cents throughout."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shop.errors import Conflict, DomainError, InvalidValue, NotFound


@dataclass(frozen=True)
class LineItem:
    sku: str
    qty: int


@dataclass(frozen=True)
class Receipt:
    order_id: str
    total_cents: int
    balance_cents: int


@dataclass(frozen=True)
class OrderLine:
    sku: str
    qty: int
    price_cents: int


@dataclass(frozen=True)
class Order:
    order_id: str
    items: list[OrderLine]
    total_cents: int
    created_at: float  # seconds since the epoch


class InsufficientFunds(DomainError):
    code = "insufficient_funds"
    status = 402


class BalanceLimit(Conflict):
    """A top-up that would take the wallet over its maximum: the request is fine, the state
    refuses it (409, as the body of a well-formed request meeting a conflicting state)."""

    code = "balance_limit"


class IdempotencyKeyReused(InvalidValue):
    """The same Idempotency-Key came back with a different body."""

    code = "idempotency_key_reused"


class OrderNotFound(NotFound):
    code = "order_not_found"


class Billing(Protocol):
    def topup(self, user_id: str, amount_cents: int, idempotency_key: str | None = None) -> int:
        """Add to the wallet; the new balance in cents. Raises InvalidValue.

        With an ``idempotency_key`` the top-up happens once per key: the same key and amount
        again answer the first balance without crediting again; another amount raises
        IdempotencyKeyReused. Without one, a top-up whose answer was lost (a timeout, a 503
        from a seam) may or may not have been credited: its outcome is unknown, not failed,
        and only a key makes it safe to send again."""

    def balance(self, user_id: str) -> int:
        """The wallet balance in cents (0 for a user who never topped up)."""

    def checkout(self, user_id: str, items: list[LineItem], idempotency_key: str) -> Receipt:
        """Price, debit, record the order and publish PaymentCaptured, once per key.

        The same key with the same items replays the first receipt without charging again;
        with other items it raises IdempotencyKeyReused. Raises InsufficientFunds,
        UnknownSku, InvalidValue.
        """

    def order(self, user_id: str, order_id: str) -> Order:
        """One of the user's orders. Raises OrderNotFound, also for another user's order."""

    def payments(self, since: float, until: float) -> int:
        """How many payments were captured in [since, until) (seconds since the epoch): the
        orders recorded then, each of which published one PaymentCaptured with that time.
        Raises InvalidValue for a window that is not finite or ends before it starts."""
