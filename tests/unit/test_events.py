import time

import pytest

from shop.billing.api import LineItem
from shop.billing.service import SCHEMA as BILLING_SCHEMA
from shop.billing.service import BillingService
from shop.errors import Forbidden, InvalidRequest, NotFound, Unavailable
from shop.events import OUTBOX_SCHEMA, DirectDelivery, Outbox, OutboxRelay, PaymentCaptured
from shop.notify.routes import parse_event
from shop.notify.service import SCHEMA as NOTIFY_SCHEMA
from shop.notify.service import NotifyService
from shop.storage.sqlite import SqliteDatabase
from tests.fakes import FakeNotify, FakeSearch


def event(n: int = 1) -> PaymentCaptured:
    return PaymentCaptured(f"e{n}", f"o{n}", "u1", 1234, time.time())


def test_notify_is_idempotent_and_records_lag(db):
    db.apply_schema(NOTIFY_SCHEMA)
    notify = NotifyService(db)
    assert notify.deliver(event(1)) is True
    assert notify.deliver(event(1)) is False
    [note] = notify.inbox("u1")
    assert note.text == "Payment of 12.34 captured for order o1"
    assert notify.inbox("u2") == []
    summary = notify.lag_summary()
    assert summary["count"] == 1 and 0 <= summary["max_ms"] < 5000


def test_the_inbox_pages_through_every_notification_once(db):
    """250 notifications, many stored in the same clock tick: pages of 100 by the cursor of
    each full page's oldest give every one exactly once; a cursor from another inbox is a
    422, not an empty page."""
    from shop.notify.api import INBOX_PAGE
    db.apply_schema(NOTIFY_SCHEMA)
    ticks = iter(1000.0 + i // 7 for i in range(250))  # seven per tick: ties on created_at
    notify = NotifyService(db, clock=lambda: next(ticks))
    for n in range(250):
        notify.deliver(PaymentCaptured(f"e{n:03d}", f"o{n}", "u1", 100, 999.0))
    seen, before, pages = [], None, 0
    while True:
        page = notify.inbox("u1", before)
        pages += 1
        assert page == sorted(page, key=lambda n: (n.created_at, n.event_id))
        seen = [n.order_id for n in page] + seen
        if len(page) < INBOX_PAGE:
            break
        before = page[0].event_id
    assert pages == 3 and seen == [f"o{n}" for n in range(250)]
    with pytest.raises(NotFound):  # another user's cursor names nothing in this inbox
        notify.inbox("u2", "e001")


def test_direct_delivery_shares_the_checkout_transaction(db):
    """Colocated on one database, a failed commit loses the notification with the debit."""
    db.apply_schema(BILLING_SCHEMA + NOTIFY_SCHEMA)
    notify = NotifyService(db)
    billing = BillingService(db, FakeSearch({"SKU-A": 100}), DirectDelivery(notify))
    billing.topup("u1", 1000)
    billing.checkout("u1", [LineItem("SKU-A", 1)], "k1")
    assert len(notify.inbox("u1")) == 1
    with pytest.raises(RuntimeError):
        with db.transaction():
            DirectDelivery(notify).publish(event(2))
            raise RuntimeError("abort")
    assert len(notify.inbox("u1")) == 1


def outbox_billing(db: SqliteDatabase, relay: OutboxRelay) -> BillingService:
    return BillingService(db, FakeSearch({"SKU-A": 100}), Outbox(db, relay.wake))


def test_outbox_relay_retries_until_acknowledged(db):
    db.apply_schema(BILLING_SCHEMA + OUTBOX_SCHEMA)
    notify = FakeNotify(failures=3)
    relay = OutboxRelay(db, notify, poll_s=0.01, max_backoff_s=0.05)
    billing = outbox_billing(db, relay)
    billing.topup("u1", 1000)
    receipts = [billing.checkout("u1", [LineItem("SKU-A", 1)], f"k{i}") for i in range(5)]
    relay.start()
    try:
        deadline = time.monotonic() + 10
        while relay.backlog() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        relay.stop()
    assert relay.backlog() == 0
    assert sorted(e.order_id for e in notify.stored.values()) == sorted(r.order_id for r in receipts)
    assert notify.attempts >= 3 + 5


def test_outbox_rows_survive_a_relay_that_died_mid_batch(db):
    """A claimed but unacknowledged row is delivered by the next relay once the lease ends."""
    db.apply_schema(BILLING_SCHEMA + OUTBOX_SCHEMA)
    crashed = OutboxRelay(db, FakeNotify(), lease_s=0.05)
    billing = outbox_billing(db, crashed)
    billing.topup("u1", 1000)
    billing.checkout("u1", [LineItem("SKU-A", 1)], "k1")
    assert len(crashed._claim()) == 1  # claimed, then the process died: nothing given back
    survivor_notify = FakeNotify()
    survivor = OutboxRelay(db, survivor_notify, lease_s=0.05)
    assert survivor.deliver_pending() == 0  # still leased to the crashed relay
    time.sleep(0.06)
    assert survivor.deliver_pending() == 1 and len(survivor_notify.stored) == 1
    assert survivor.backlog() == 0


class Crash(BaseException):
    """The relay's process dying at a chosen instruction (nothing after it runs)."""


def test_a_relay_dying_between_delivery_and_marking_sent_notifies_once(db):
    """The window between publish and mark-sent, forced: notify stored the event, the relay
    died before recording that. The next relay delivers it again once the lease ends; notify's
    dedupe by event id keeps one notification."""
    db.apply_schema(BILLING_SCHEMA + OUTBOX_SCHEMA + NOTIFY_SCHEMA)
    notify = NotifyService(db)
    answers: list[bool] = []

    class DiesAfterDelivering:
        def deliver(self, event: PaymentCaptured) -> bool:
            answers.append(notify.deliver(event))
            raise Crash()  # killed before _settle: the row stays claimed, not delivered

    crashed = OutboxRelay(db, DiesAfterDelivering(), lease_s=0.05)
    crashed._release = lambda: None  # a SIGKILLed relay gives nothing back
    billing = outbox_billing(db, crashed)
    billing.topup("u1", 1000)
    receipt = billing.checkout("u1", [LineItem("SKU-A", 1)], "k1")
    with pytest.raises(Crash):
        crashed.deliver_pending()
    assert answers == [True] and crashed.backlog() == 1  # stored, yet still owed

    class Counting:
        def deliver(self, event: PaymentCaptured) -> bool:
            answers.append(notify.deliver(event))
            return answers[-1]

    survivor = OutboxRelay(db, Counting(), lease_s=0.05)
    time.sleep(0.06)
    assert survivor.deliver_pending() == 1
    assert answers == [True, False]  # delivered twice, stored once
    assert [n.order_id for n in notify.inbox("u1")] == [receipt.order_id]
    assert survivor.backlog() == 0


def test_rolled_back_checkout_leaves_no_outbox_row(db):
    db.apply_schema(BILLING_SCHEMA + OUTBOX_SCHEMA)
    relay = OutboxRelay(db, FakeNotify())
    with pytest.raises(RuntimeError):
        with db.transaction():
            Outbox(db, relay.wake).publish(event(1))
            raise RuntimeError("abort")
    assert relay.backlog() == 0 and not relay.wake.is_set()


def test_a_failing_relay_gives_back_only_its_own_claims(db):
    db.apply_schema(BILLING_SCHEMA + OUTBOX_SCHEMA)
    for n in range(4):
        with db.transaction():
            Outbox(db).publish(event(n))
    holder = OutboxRelay(db, FakeNotify(), batch=2)
    claimed = holder._claim()  # holder is busy delivering rows 1-2
    with pytest.raises(Unavailable):
        OutboxRelay(db, FakeNotify(failures=1), batch=1).deliver_pending()  # claims 3, fails
    third = OutboxRelay(db, FakeNotify(), batch=10)
    assert [seq for seq, _ in third._claim()] == [3, 4]  # never the holder's rows
    assert [seq for seq, _ in claimed] == [1, 2]


class RefusingNotify(FakeNotify):
    """Refuses one event for good (a 4xx), accepts the others."""

    def deliver(self, event: PaymentCaptured) -> bool:
        if event.event_id == "e0":
            raise InvalidRequest("not a PaymentCaptured event")
        return super().deliver(event)


def test_a_refused_event_is_set_aside_and_does_not_block_the_rest(db):
    db.apply_schema(BILLING_SCHEMA + OUTBOX_SCHEMA)
    for n in range(4):
        with db.transaction():
            Outbox(db).publish(event(n))
    notify = RefusingNotify()
    relay = OutboxRelay(db, notify)
    assert relay.deliver_pending() == 3 and relay.backlog() == 0
    assert sorted(notify.stored) == ["e1", "e2", "e3"]
    [row] = db.query("SELECT event_id, rejected FROM billing_outbox WHERE rejected IS NOT NULL")
    assert row["event_id"] == "e0" and "invalid_request" in row["rejected"]


@pytest.mark.parametrize("error", [Unavailable("down"), Forbidden("wrong credential"),
                                   NotFound("no such route")])
def test_failures_that_are_not_the_events_fault_are_retried_not_rejected(db, error):
    class Failing(FakeNotify):
        def deliver(self, event):
            raise error

    db.apply_schema(BILLING_SCHEMA + OUTBOX_SCHEMA)
    with db.transaction():
        Outbox(db).publish(event(1))
    relay = OutboxRelay(db, Failing())
    with pytest.raises(type(error)):
        relay.deliver_pending()
    assert relay.backlog() == 1 and relay.rejected() == 0
    assert OutboxRelay(db, FakeNotify()).deliver_pending() == 1  # claim was given back


def test_an_idle_relay_takes_no_write_lock(db):
    db.apply_schema(BILLING_SCHEMA + OUTBOX_SCHEMA)
    relay = OutboxRelay(db, FakeNotify())
    other = SqliteDatabase(db.url)
    try:
        with other.transaction():  # someone holds the write lock: an idle relay must not wait
            assert relay.deliver_pending() == 0
    finally:
        other.close()


@pytest.mark.parametrize("body", [
    {"occurred_at": float("nan")}, {"occurred_at": float("inf")}, {"occurred_at": True},
    {"occurred_at": "now"}, {"total_cents": 1.5}, {"total_cents": "5"}, {"event_id": 7},
    {"event_id": "\ud800"}, {"user_id": None}])
def test_malformed_events_are_refused(body):
    good = {"event_id": "e", "order_id": "o", "user_id": "u", "total_cents": 5, "occurred_at": 1.0}
    assert parse_event(good) == PaymentCaptured("e", "o", "u", 5, 1.0)
    with pytest.raises(InvalidRequest):
        parse_event({**good, **body})
