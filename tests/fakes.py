"""In-memory fakes that subclass the real interfaces, for unit tests of one component."""
from __future__ import annotations

from shop.chain.api import Link
from shop.errors import Unavailable
from shop.events import PaymentCaptured, Publisher
from shop.notify.api import Notification, Notify
from shop.search.api import Hit, Search, UnknownSku


class FakeSearch(Search):
    def __init__(self, prices: dict[str, int]) -> None:
        self._prices = dict(prices)
        self.calls = 0

    def search(self, q: str, limit: int) -> list[Hit]:
        return [Hit(sku, sku.lower(), p, 1.0) for sku, p in self._prices.items() if q in sku][:limit]

    def prices(self, skus: list[str]) -> dict[str, int]:
        self.calls += 1
        for sku in skus:
            if sku not in self._prices:
                raise UnknownSku(sku)
        return {sku: self._prices[sku] for sku in skus}


class RecordingPublisher(Publisher):
    def __init__(self) -> None:
        self.events: list[PaymentCaptured] = []

    def publish(self, event: PaymentCaptured) -> None:
        self.events.append(event)


class FakeNotify(Notify):
    """Fails the first ``failures`` deliveries (like a notify that is down), then stores."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts = 0
        self.stored: dict[str, PaymentCaptured] = {}

    def deliver(self, event: PaymentCaptured) -> bool:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise Unavailable("notify is down")
        if event.event_id in self.stored:
            return False
        self.stored[event.event_id] = event
        return True

    def inbox(self, user_id: str, before: str | None = None) -> list[Notification]:
        notes = [Notification(e.event_id, e.order_id, "", e.occurred_at)
                 for e in self.stored.values() if e.user_id == user_id]
        if before is not None:  # a fake's inbox is short: one page, cut at the cursor
            notes = notes[:[n.event_id for n in notes].index(before)]
        return notes


class CountingLink(Link):
    """A link that does not forward: it records the ``remaining`` of each call it gets."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.calls: list[int] = []

    def forward(self, remaining: int) -> list[str]:
        self.calls.append(remaining)
        return [f"{self.component}+{remaining}"]
