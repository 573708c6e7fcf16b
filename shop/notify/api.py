"""Notify: consume PaymentCaptured exactly once per event id; serve the caller's inbox."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shop.events import PaymentCaptured


@dataclass(frozen=True)
class Notification:
    event_id: str
    order_id: str
    text: str
    created_at: float  # seconds since the epoch, when notify stored it


INBOX_PAGE = 100  # notifications per inbox page

LagCounts = list[tuple[int, int]]
"""Notification lags as (lag in µs, how many) pairs, lags ascending. A lag is rounded to 4
significant digits (exact below 10 ms, within 0.05% above), so the list stays short however
many notifications it counts."""


class Notify(Protocol):
    def deliver(self, event: PaymentCaptured) -> bool:
        """Store the notification for ``event``; False when it was already stored (idempotent)."""

    def inbox(self, user_id: str, before: str | None = None) -> list[Notification]:
        """A page of the user's notifications: the newest INBOX_PAGE of them, or with
        ``before`` (an event id of this inbox) the newest INBOX_PAGE older than that one;
        oldest of them first, so a full page's first event id asks for the next page.
        Raises InvalidValue when ``before`` names no notification of this user."""

    def lags(self, since: float, until: float) -> LagCounts:
        """The lag (stored time - payment time) of every notification for a payment captured
        in [since, until) (seconds since the epoch). Raises InvalidValue for a window that is
        not finite or ends before it starts."""
