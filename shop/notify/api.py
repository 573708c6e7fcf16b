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


class Notify(Protocol):
    def deliver(self, event: PaymentCaptured) -> bool:
        """Store the notification for ``event``; False when it was already stored (idempotent)."""

    def inbox(self, user_id: str) -> list[Notification]:
        """The user's newest notifications (at most 100), oldest of them first."""
