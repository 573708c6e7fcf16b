import threading

import pytest

from shop.billing.api import IdempotencyKeyReused, InsufficientFunds, LineItem, OrderNotFound
from shop.billing.service import MAX_TOPUP_CENTS, SCHEMA, BillingService
from shop.errors import InvalidValue
from shop.search.api import UnknownSku
from tests.fakes import FakeSearch, RecordingPublisher


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def search() -> FakeSearch:
    return FakeSearch({"SKU-A": 250, "SKU-B": 1000})


@pytest.fixture
def billing(db, search, publisher) -> BillingService:
    db.apply_schema(SCHEMA)
    return BillingService(db, search, publisher)


def test_topup_and_balance(billing):
    assert billing.balance("u1") == 0
    assert billing.topup("u1", 500) == 500
    assert billing.topup("u1", 250) == 750
    assert billing.balance("u1") == 750 and billing.balance("u2") == 0


def test_a_keyed_topup_credits_once_per_key(billing):
    assert billing.topup("u1", 500, "t-1") == 500
    assert billing.topup("u1", 500, "t-1") == 500  # the first answer, not a second credit
    assert billing.topup("u1", 200, "t-2") == 700
    assert billing.topup("u2", 500, "t-1") == 500  # keys are per user
    with pytest.raises(IdempotencyKeyReused):
        billing.topup("u1", 999, "t-1")  # the same key for another amount
    assert billing.balance("u1") == 700
    billing.checkout("u1", [LineItem("SKU-A", 1)], "t-3")
    assert billing.topup("u1", 100, "t-3") == 550  # a checkout's key is not a top-up's
    with pytest.raises(InvalidValue):
        billing.topup("u1", 100, "")


def test_a_key_raced_eight_ways_credits_once(billing):
    results, barrier = [], threading.Barrier(8)

    def topup() -> None:
        barrier.wait()
        results.append(billing.topup("u1", 1_000, "raced"))

    threads = [threading.Thread(target=topup) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [1_000] * 8 and billing.balance("u1") == 1_000


@pytest.mark.parametrize("amount", [0, -1, MAX_TOPUP_CENTS + 1])
def test_absurd_topups_are_refused(billing, amount):
    with pytest.raises(InvalidValue):
        billing.topup("u1", amount)
    assert billing.balance("u1") == 0


def test_checkout_debits_records_and_publishes(billing, publisher):
    billing.topup("u1", 5000)
    receipt = billing.checkout("u1", [LineItem("SKU-A", 2), LineItem("SKU-B", 1)], "k1")
    assert (receipt.total_cents, receipt.balance_cents) == (1500, 3500)
    order = billing.order("u1", receipt.order_id)
    assert [(l.sku, l.qty, l.price_cents) for l in order.items] == [("SKU-A", 2, 250), ("SKU-B", 1, 1000)]
    [event] = publisher.events
    assert (event.order_id, event.user_id, event.total_cents) == (receipt.order_id, "u1", 1500)


def test_same_key_replays_without_charging_twice(billing, publisher, search):
    billing.topup("u1", 5000)
    first = billing.checkout("u1", [LineItem("SKU-B", 1)], "k1")
    again = billing.checkout("u1", [LineItem("SKU-B", 1)], "k1")
    assert again == first and billing.balance("u1") == 4000
    assert len(publisher.events) == 1
    assert search.calls == 1  # a replay is answered before pricing
    with pytest.raises(IdempotencyKeyReused):
        billing.checkout("u1", [LineItem("SKU-B", 2)], "k1")
    # keys are per user: another user's identical key is a new checkout
    billing.topup("u2", 5000)
    assert billing.checkout("u2", [LineItem("SKU-B", 1)], "k1").order_id != first.order_id


def test_insufficient_funds_and_unknown_sku_change_nothing(billing, publisher):
    billing.topup("u1", 100)
    with pytest.raises(InsufficientFunds):
        billing.checkout("u1", [LineItem("SKU-A", 1)], "k1")
    with pytest.raises(UnknownSku):
        billing.checkout("u1", [LineItem("SKU-Z", 1)], "k2")
    assert billing.balance("u1") == 100 and publisher.events == []
    billing.topup("u1", 1000)  # the refused key is free to use once funds arrive
    assert billing.checkout("u1", [LineItem("SKU-A", 1)], "k1").total_cents == 250


@pytest.mark.parametrize("items,key", [([], "k"), ([LineItem("SKU-A", 0)], "k"),
                                       ([LineItem("SKU-A", 101)], "k"), ([LineItem("SKU-A", 1)], ""),
                                       ([LineItem("SKU-A", 1)], "with space"),
                                       ([LineItem("SKU-A", 1)] * 51, "k")])
def test_bad_checkouts_are_refused(billing, items, key):
    billing.topup("u1", 100_000)
    with pytest.raises(InvalidValue):
        billing.checkout("u1", items, key)


def test_other_users_orders_are_not_found(billing):
    billing.topup("u1", 5000)
    receipt = billing.checkout("u1", [LineItem("SKU-A", 1)], "k1")
    with pytest.raises(OrderNotFound):
        billing.order("u2", receipt.order_id)
    with pytest.raises(OrderNotFound):
        billing.order("u1", "nope")


def test_concurrent_same_key_charges_once(db, search, publisher):
    """Threads racing one key through separate connections: one debit, one event, one order."""
    db.apply_schema(SCHEMA)
    billing = BillingService(db, search, publisher)
    billing.topup("u1", 100_000)
    receipts, barrier = [], threading.Barrier(8)

    def buy() -> None:
        barrier.wait()
        receipts.append(billing.checkout("u1", [LineItem("SKU-B", 3)], "same-key"))

    threads = [threading.Thread(target=buy) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.order_id for r in receipts}) == 1 and len(receipts) == 8
    assert billing.balance("u1") == 97_000 and len(publisher.events) == 1
    assert db.query_one("SELECT count(*) AS n FROM billing_orders")["n"] == 1
