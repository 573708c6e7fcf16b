"""Notify's client stub: the ``Notify`` interface over a hop."""
from __future__ import annotations

from shop.events import PaymentCaptured
from shop.hops import HopClient
from shop.notify.api import LagCounts, Notification


class NotifyClient:
    def __init__(self, hop: HopClient) -> None:
        self._hop = hop

    def deliver(self, event: PaymentCaptured) -> bool:
        # Idempotent by event id, so a dropped connection is safe to retry.
        data = self._hop.call("/internal/notify/deliver", event.to_json(), idempotent=True)
        return data["status"] == "stored"

    def inbox(self, user_id: str, before: str | None = None) -> list[Notification]:
        data = self._hop.call("/internal/notify/inbox", {"user_id": user_id, "before": before},
                              idempotent=True)
        return [Notification(**note) for note in data["notifications"]]

    def lags(self, since: float, until: float) -> LagCounts:
        data = self._hop.call("/internal/notify/lags", {"since": since, "until": until},
                              idempotent=True)
        return [(lag, count) for lag, count in data["lag_us"]]
