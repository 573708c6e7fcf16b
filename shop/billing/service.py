"""Billing's implementation: wallets, orders and idempotency records in its own tables.

Checkout prices the items through ``Search`` (a call that may cross a seam) *before* it opens
its write transaction, so no lock is held across a network hop; then, in one transaction, it
re-checks the idempotency key, debits, records the order and the key, and publishes
``PaymentCaptured`` through the placement's publisher (in-transaction delivery or outbox).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import asdict

from shop.billing.api import (BalanceLimit, IdempotencyKeyReused, InsufficientFunds, LineItem, Order,
                              OrderLine, OrderNotFound, Receipt)
from shop.errors import InvalidValue
from shop.events import PaymentCaptured, Publisher, check_window
from shop.search.api import Search
from shop.storage import Connection, Database, DuplicateKey

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS billing_wallets (
        user_id TEXT PRIMARY KEY,
        balance_cents INTEGER NOT NULL CHECK (balance_cents >= 0),
        topped_up_cents INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS billing_orders (
        order_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        items TEXT NOT NULL,
        total_cents INTEGER NOT NULL,
        created_at REAL NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS billing_orders_by_user ON billing_orders (user_id, created_at)""",
    """CREATE TABLE IF NOT EXISTS billing_idempotency (
        user_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        receipt TEXT NOT NULL,
        PRIMARY KEY (user_id, key))""",
]

MAX_TOPUP_CENTS = 100_000_00  # 100,000.00 a top-up; more is refused as absurd
MAX_BALANCE_CENTS = 10**12
MAX_ITEMS, MAX_QTY = 50, 100
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")
ORDER_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex
TOPUP_KEY_PREFIX = "topup:"  # top-up keys live beside checkout keys, never colliding with one


def validate_items(items: list[LineItem]) -> None:
    if not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidValue(f"a checkout needs 1 to {MAX_ITEMS} items")
    for item in items:
        if not 1 <= item.qty <= MAX_QTY:
            raise InvalidValue(f"qty must be between 1 and {MAX_QTY}")
        if not 1 <= len(item.sku) <= 64:
            raise InvalidValue("sku must be 1-64 characters")


def validate_idempotency_key(key: str) -> None:
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidValue("Idempotency-Key must be 1-128 printable ASCII characters")


def request_hash(items: list[LineItem]) -> str:
    canonical = json.dumps([[i.sku, i.qty] for i in items], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class BillingService:
    """The local implementation of ``Billing``."""

    def __init__(self, db: Database, search: Search, publisher: Publisher, clock=time.time) -> None:
        self._db = db
        self._search = search
        self._publisher = publisher
        self._clock = clock

    def topup(self, user_id: str, amount_cents: int, idempotency_key: str | None = None) -> int:
        if not 1 <= amount_cents <= MAX_TOPUP_CENTS:
            raise InvalidValue(f"amount_cents must be between 1 and {MAX_TOPUP_CENTS}")
        if idempotency_key is None:
            with self._db.transaction() as conn:
                return self._credit(conn, user_id, amount_cents)
        validate_idempotency_key(idempotency_key)
        key, digest = TOPUP_KEY_PREFIX + idempotency_key, f"topup:{amount_cents}"
        replay = self._topup_replay(user_id, key, digest)
        if replay is not None:
            return replay
        try:
            with self._db.transaction() as conn:
                # Claim the key before crediting: a concurrent request with the same key
                # fails on the key's primary key (waiting for this one to finish first).
                conn.execute("INSERT INTO billing_idempotency VALUES (?, ?, ?, ?)",
                             (user_id, key, digest, "{}"))
                balance = self._credit(conn, user_id, amount_cents)
                conn.execute("UPDATE billing_idempotency SET receipt = ? WHERE user_id = ? "
                             "AND key = ?", (json.dumps({"balance_cents": balance}), user_id, key))
            return balance
        except DuplicateKey:  # that concurrent request committed first: answer what it did
            replay = self._topup_replay(user_id, key, digest)
            if replay is None:
                raise
            return replay

    def _credit(self, conn: Connection, user_id: str, amount_cents: int) -> int:
        # One atomic increment: two concurrent first top-ups must add up, not overwrite.
        balance = conn.execute(
            """INSERT INTO billing_wallets (user_id, balance_cents, topped_up_cents)
               VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET
               balance_cents = billing_wallets.balance_cents + excluded.balance_cents,
               topped_up_cents = billing_wallets.topped_up_cents + excluded.topped_up_cents
               RETURNING balance_cents""",
            (user_id, amount_cents, amount_cents)).fetchone()["balance_cents"]
        if balance > MAX_BALANCE_CENTS:  # raising rolls the increment back
            raise BalanceLimit("the wallet would exceed its maximum balance")
        return balance

    def _topup_replay(self, user_id: str, key: str, digest: str) -> int | None:
        row = self._db.query_one("SELECT request_hash, receipt FROM billing_idempotency "
                                 "WHERE user_id = ? AND key = ?", (user_id, key))
        if row is None:
            return None
        if row["request_hash"] != digest:
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different amount")
        return int(json.loads(row["receipt"])["balance_cents"])

    def balance(self, user_id: str) -> int:
        row = self._db.query_one("SELECT balance_cents FROM billing_wallets WHERE user_id = ?",
                                 (user_id,))
        return row["balance_cents"] if row else 0

    def checkout(self, user_id: str, items: list[LineItem], idempotency_key: str) -> Receipt:
        validate_items(items)
        validate_idempotency_key(idempotency_key)
        digest = request_hash(items)
        replay = self._replay(self._db.query_one, user_id, idempotency_key, digest)
        if replay is not None:
            return replay
        prices = self._search.prices([item.sku for item in items])
        lines = [OrderLine(i.sku, i.qty, prices[i.sku]) for i in items]
        total = sum(line.qty * line.price_cents for line in lines)
        with self._db.transaction() as conn:
            # Lock the wallet before looking at the key: a concurrent request with the same
            # key then waits here and sees its receipt (on SQLite the transaction locks all).
            balance = self._balance(conn, user_id)
            replay = self._replay(self._db.query_one, user_id, idempotency_key, digest)
            if replay is not None:  # a concurrent request with the same key won the race
                return replay
            if balance < total:
                raise InsufficientFunds(f"total {total} cents exceeds balance {balance} cents")
            now = self._clock()
            receipt = Receipt(uuid.uuid4().hex, total, balance - total)
            conn.execute("UPDATE billing_wallets SET balance_cents = ? WHERE user_id = ?",
                         (receipt.balance_cents, user_id))
            conn.execute("INSERT INTO billing_orders VALUES (?, ?, ?, ?, ?)",
                         (receipt.order_id, user_id, json.dumps([asdict(l) for l in lines]),
                          total, now))
            conn.execute("INSERT INTO billing_idempotency VALUES (?, ?, ?, ?)",
                         (user_id, idempotency_key, digest, json.dumps(asdict(receipt))))
            self._publisher.publish(PaymentCaptured(uuid.uuid4().hex, receipt.order_id,
                                                    user_id, total, now))
        return receipt

    def order(self, user_id: str, order_id: str) -> Order:
        if not ORDER_ID.fullmatch(order_id):  # not one we issue: no need to ask the database
            raise OrderNotFound(f"no order {order_id!r}")
        row = self._db.query_one(
            "SELECT * FROM billing_orders WHERE order_id = ? AND user_id = ?", (order_id, user_id))
        if row is None:
            raise OrderNotFound(f"no order {order_id!r}")
        lines = [OrderLine(**line) for line in json.loads(row["items"])]
        return Order(row["order_id"], lines, row["total_cents"], row["created_at"])

    def payments(self, since: float, until: float) -> int:
        check_window(since, until)
        row = self._db.query_one("SELECT count(*) AS n FROM billing_orders "
                                 "WHERE created_at >= ? AND created_at < ?", (since, until))
        return int(row["n"]) if row else 0

    def _balance(self, conn: Connection, user_id: str) -> int:
        """The balance in cents, its row locked until the transaction ends."""
        row = conn.execute("SELECT balance_cents FROM billing_wallets WHERE user_id = ?"
                           + self._db.lock_rows, (user_id,)).fetchone()
        return row["balance_cents"] if row else 0

    @staticmethod
    def _replay(query_one, user_id: str, key: str, digest: str) -> Receipt | None:
        row = query_one("SELECT request_hash, receipt FROM billing_idempotency "
                        "WHERE user_id = ? AND key = ?", (user_id, key))
        if row is None:
            return None
        if row["request_hash"] != digest:
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different body")
        return Receipt(**json.loads(row["receipt"]))
