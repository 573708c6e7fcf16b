"""Domain events and how they travel: in the caller's transaction, or via an outbox.

Colocated on one database, billing hands ``PaymentCaptured`` straight to notify inside the
checkout transaction (``DirectDelivery``): one commit writes the debit, the order and the
notification. Apart, billing writes the event to its outbox in the same transaction as the
debit (``Outbox``) and an ``OutboxRelay`` delivers it to notify at least once, retrying until
notify acknowledges; notify dedupes by event id, so each payment is notified exactly once.
"""
from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

from shop.errors import DomainError, InvalidRequest, InvalidValue
from shop.storage import Database

if TYPE_CHECKING:
    from shop.notify.api import Notify

log = logging.getLogger(__name__)

EVENT_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: how billing names each event it publishes
OUTBOX_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS billing_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        claimed_by TEXT,
        claimed_until REAL NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_at REAL,
        rejected TEXT)""",
    """CREATE INDEX IF NOT EXISTS billing_outbox_pending
        ON billing_outbox (delivered_at, claimed_until) WHERE delivered_at IS NULL""",
]


@dataclass(frozen=True)
class PaymentCaptured:
    event_id: str
    order_id: str
    user_id: str
    total_cents: int
    occurred_at: float  # seconds since the epoch, when the payment committed its debit

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, body: dict) -> "PaymentCaptured":
        return cls(event_id=str(body["event_id"]), order_id=str(body["order_id"]),
                   user_id=str(body["user_id"]), total_cents=int(body["total_cents"]),
                   occurred_at=float(body["occurred_at"]))


def check_window(since: float, until: float) -> None:
    """A time window [since, until) in seconds since the epoch: finite, not ending before it
    starts. Raises InvalidValue."""
    if not (math.isfinite(since) and math.isfinite(until)):
        raise InvalidValue("since and until must be finite numbers of seconds since the epoch")
    if until < since:
        raise InvalidValue("the window ends before it starts (until < since)")


class Publisher(Protocol):
    def publish(self, event: PaymentCaptured) -> None:
        """Publish ``event`` as part of the caller's open transaction."""


class DirectDelivery:
    """Deliver in the publisher's transaction: only valid when notify shares its database."""

    def __init__(self, notify: "Notify") -> None:
        self._notify = notify

    def publish(self, event: PaymentCaptured) -> None:
        self._notify.deliver(event)


class Outbox:
    """Write the event to the outbox in the caller's transaction; wake the relay on commit."""

    def __init__(self, db: Database, wake: threading.Event | None = None) -> None:
        self._db = db
        self._wake = wake

    def publish(self, event: PaymentCaptured) -> None:
        self._db.execute(
            "INSERT INTO billing_outbox (event_id, body, created_at) VALUES (?, ?, ?)",
            (event.event_id, json.dumps(event.to_json()), time.time()))
        if self._wake is not None:
            self._db.on_commit(self._wake.set)


class OutboxRelay:
    """Deliver outbox rows to notify until each is acknowledged.

    Several relays (one per gunicorn worker) may share one outbox. A relay claims a batch
    in its own name with a lease of ``lease_s`` seconds: rows are not delivered twice while
    deliveries take less than the lease, and a relay that dies mid-batch only delays its
    rows until the lease ends. A failed delivery ends the batch and gives back this relay's
    remaining claims. An event notify *refuses* (a 4xx: it will never be accepted) is set
    aside as ``rejected`` with the reason, so it cannot block the events behind it.
    Delivery is at least once; notify dedupes by event id.
    """

    def __init__(self, db: Database, notify: "Notify", *, batch: int = 16,
                 poll_s: float = 0.05, lease_s: float = 15.0, max_backoff_s: float = 2.0) -> None:
        self._db = db
        self._notify = notify
        self.name = uuid.uuid4().hex
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._batch, self._poll_s, self._lease_s = batch, poll_s, lease_s
        self._max_backoff_s = max_backoff_s
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def deliver_pending(self) -> int:
        """Claim and deliver one batch; the number delivered. Raises on a failed delivery
        (after giving back the claims this relay still holds)."""
        delivered = 0
        try:
            for seq, body in self._claim():
                try:
                    self._notify.deliver(PaymentCaptured.from_json(json.loads(body)))
                except (InvalidRequest, InvalidValue) as exc:  # notify will never take it
                    self._settle(seq, "rejected = ?", f"{exc.code}: {exc.detail}")
                    log.error("outbox relay: notify refused event seq %s: %s", seq, exc)
                    continue
                self._settle(seq, "delivered_at = ?", time.time())
                delivered += 1
        except BaseException:
            self._release()
            raise
        return delivered

    def backlog(self) -> int:
        """Events written but neither acknowledged by notify nor rejected."""
        row = self._db.query_one("SELECT count(*) AS n FROM billing_outbox "
                                 "WHERE delivered_at IS NULL AND rejected IS NULL")
        return int(row["n"]) if row else 0

    def rejected(self) -> int:
        """Events notify refused as malformed, kept with the reason."""
        row = self._db.query_one(
            "SELECT count(*) AS n FROM billing_outbox WHERE rejected IS NOT NULL")
        return int(row["n"]) if row else 0

    def _claim(self) -> list[tuple[int, str]]:
        now = time.time()
        # Look before taking the write lock: an idle relay must not contend with checkouts.
        if self._db.query_one(
                "SELECT 1 FROM billing_outbox WHERE delivered_at IS NULL AND rejected IS NULL "
                "AND claimed_until < ? LIMIT 1", (now,)) is None:
            return []
        with self._db.transaction() as conn:
            rows = conn.execute(
                """UPDATE billing_outbox
                   SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1
                   WHERE seq IN (SELECT seq FROM billing_outbox
                                 WHERE delivered_at IS NULL AND rejected IS NULL
                                   AND claimed_until < ?
                                 ORDER BY seq LIMIT ?""" + self._db.claim_rows + """)
                     AND claimed_until < ?
                   RETURNING seq, body""",
                (self.name, now + self._lease_s, now, self._batch, now)).fetchall()
        return sorted((row["seq"], row["body"]) for row in rows)

    def _settle(self, seq: int, assignment: str, value: object) -> None:
        with self._db.transaction() as conn:
            conn.execute(f"UPDATE billing_outbox SET {assignment}, claimed_by = NULL "
                         "WHERE seq = ?", (value, seq))

    def _release(self) -> None:
        """Give back this relay's unsettled claims so the retry need not wait out the lease."""
        try:
            with self._db.transaction() as conn:
                conn.execute("UPDATE billing_outbox SET claimed_until = 0, claimed_by = NULL "
                             "WHERE claimed_by = ? AND delivered_at IS NULL", (self.name,))
        except Exception:  # the lease expires by itself
            log.exception("outbox relay: could not release claims")

    def _run(self) -> None:
        backoff = self._poll_s
        while not self._stop.is_set():
            self.wake.clear()
            try:
                busy = self.deliver_pending() > 0
                backoff = self._poll_s
            except (DomainError, OSError) as exc:
                log.warning("outbox relay: delivery failed, retrying in %.2fs: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            except Exception:  # keep relaying whatever goes wrong; never lose the thread
                log.exception("outbox relay: unexpected error")
                self._stop.wait(backoff)
                continue
            if not busy:
                self.wake.wait(self._poll_s)
