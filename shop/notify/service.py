"""Notify's implementation: an idempotent consumer keyed by event id, with delivery lag."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from functools import partial

from shop.errors import NotFound
from shop.events import PaymentCaptured, check_window
from shop.notify.api import INBOX_PAGE, LagCounts, Notification
from shop.storage import Database

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS notify_notifications (
        event_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        text TEXT NOT NULL,
        occurred_at REAL NOT NULL,
        created_at REAL NOT NULL,
        lag_ms REAL NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS notify_by_user ON notify_notifications (user_id, created_at)""",
]

LAG_DIGITS = 4  # significant digits a reported lag (in µs) keeps


def rounded_us(lag_ms: float) -> int:
    """``lag_ms`` in whole µs, rounded to LAG_DIGITS significant digits."""
    value = max(0, round(lag_ms * 1000))
    step = 10 ** max(0, len(str(value)) - LAG_DIGITS)
    return (value + step // 2) // step * step


def payment_text(event: PaymentCaptured) -> str:
    return (f"Payment of {event.total_cents // 100}.{event.total_cents % 100:02d} "
            f"captured for order {event.order_id}")


class NotifyService:
    """The local implementation of ``Notify``. ``lag_ms`` = stored time - event time, in ms.

    ``on_stored`` (which the wiring may also set before traffic) is told the lag in seconds
    of each new notification once it has committed.
    """

    def __init__(self, db: Database, clock=time.time,
                 on_stored: Callable[[float], None] | None = None) -> None:
        self._db = db
        self._clock = clock
        self.on_stored = on_stored

    def deliver(self, event: PaymentCaptured) -> bool:
        now = self._clock()
        lag_s = max(0.0, now - event.occurred_at)
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO notify_notifications VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",  # not OR IGNORE: that hides NOT NULL too
                (event.event_id, event.user_id, event.order_id, payment_text(event),
                 event.occurred_at, now, lag_s * 1000))
        stored = cursor.rowcount == 1
        if stored and self.on_stored is not None:
            # On commit, not now: a checkout's transaction may enclose this one
            # (DirectDelivery) and still roll back.
            self._db.on_commit(partial(self.on_stored, lag_s))
        return stored

    def inbox(self, user_id: str, before: str | None = None) -> list[Notification]:
        # Keyset paging on (created_at, event_id): a page never repeats or skips a
        # notification stored while a reader pages (new ones are newer than every cursor).
        if before is None:
            rows = self._db.query(
                """SELECT event_id, order_id, text, created_at FROM notify_notifications
                   WHERE user_id = ? ORDER BY created_at DESC, event_id DESC LIMIT ?""",
                (user_id, INBOX_PAGE))
        else:
            cursor = self._db.query_one(
                "SELECT created_at FROM notify_notifications WHERE user_id = ? AND event_id = ?",
                (user_id, before))
            if cursor is None:
                raise NotFound(f"before: no notification {before!r} in this inbox")
            rows = self._db.query(
                """SELECT event_id, order_id, text, created_at FROM notify_notifications
                   WHERE user_id = ? AND (created_at < ? OR (created_at = ? AND event_id < ?))
                   ORDER BY created_at DESC, event_id DESC LIMIT ?""",
                (user_id, cursor["created_at"], cursor["created_at"], before, INBOX_PAGE))
        return [Notification(r["event_id"], r["order_id"], r["text"], r["created_at"])
                for r in reversed(rows)]

    def lags(self, since: float, until: float) -> LagCounts:
        check_window(since, until)
        rows = self._db.query("SELECT lag_ms FROM notify_notifications "
                              "WHERE occurred_at >= ? AND occurred_at < ?", (since, until))
        return sorted(Counter(rounded_us(row["lag_ms"]) for row in rows).items())

    def lag_summary(self) -> dict[str, float]:
        """Count, mean and max of the notification lag in ms."""
        row = self._db.query_one(
            "SELECT count(*) AS n, coalesce(avg(lag_ms), 0) AS mean, "
            "coalesce(max(lag_ms), 0) AS max FROM notify_notifications")
        return {"count": row["n"], "mean_ms": row["mean"], "max_ms": row["max"]}
