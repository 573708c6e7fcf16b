"""What the harness asks the shop, against every placement: payments and notification lag
of a time window (GET /internal/observe/payment-lag and the components' internal twins),
and the chain's path that the hop counts of shop/placement.py follow."""
from __future__ import annotations

import time

import pytest

from bench.results import hdr
from bench.system.shopquery import notification_lag, payment_lag
from shop.chain.api import MAX_HOPS
from shop.chain.service import chain_path
from shop.hops import SERVICE_HEADER
from shop.notify.service import rounded_us
from shop.observe import PAYMENT_LAG_PATH
from tests.contract.conftest import User
from tests.contract.test_shop_contract import assert_error
from tests.placements import HttpApi, eventually, topology_of

CHECKOUTS = 3


def processes(placement):
    """(process name, hosted components, Api straight to it, service credential) for each."""
    name, api, shop = placement
    if shop is None:  # in-process monolith (tests/placements.py builds it with "cred")
        return [("app", ("auth", "billing", "search", "notify"), api, "cred")]
    dep = shop.deployment
    return [(proc, hosted, HttpApi(dep.urls[proc]), dep.service_credential)
            for proc, hosted in dep.topology.processes.items()]


def lag_query(since: float, until: float) -> str:
    return f"{PAYMENT_LAG_PATH}?since={since!r}&until={until!r}"


def paid_window(api, sku):
    """A fresh user checks out CHECKOUTS times inside a window of its own; the window, and
    for each payment (order time, lag in µs as notify stored it)."""
    user = User(api, "lag")
    assert user.call("POST", "/billing/topup", {"amount_cents": 1_000_000})[0] == 200
    start = time.time()
    time.sleep(0.002)
    receipts = []
    for _ in range(CHECKOUTS):
        status, receipt = user.checkout([{"sku": sku[0], "qty": 1}])
        assert status == 201, receipt
        receipts.append(receipt)
    time.sleep(0.002)
    end = time.time()
    inbox = eventually(lambda: (lambda notes: notes if len(notes) == CHECKOUTS else None)(
        user.call("GET", "/notify/inbox")[1]["notifications"]))
    noted = {n["order_id"]: n["created_at"] for n in inbox}
    paid = []
    for receipt in receipts:
        order = user.call("GET", f"/billing/orders/{receipt['order_id']}")[1]
        occurred, stored = order["created_at"], noted[receipt["order_id"]]
        assert start <= occurred < end
        paid.append((occurred, rounded_us(max(0.0, (stored - occurred) * 1000))))
    return start, end, paid


def test_any_process_counts_the_windows_payments_and_their_lags(placement, sku):
    """Every process answers the same, whichever components it hosts (the rest is a hop)."""
    _, api, _ = placement
    start, end, paid = paid_window(api, sku)
    lags = sorted(lag for _, lag in paid)
    expected = sorted({lag: lags.count(lag) for lag in lags}.items())
    split_at = paid[1][0]  # the second payment's time: the window is half-open
    for _, _, proc, credential in processes(placement):
        service = {SERVICE_HEADER: credential}
        status, answer = proc.call("GET", lag_query(start, end), headers=service)
        assert status == 200, answer
        assert answer["payments"] == CHECKOUTS and answer["notified"] == CHECKOUTS
        assert [tuple(pair) for pair in answer["lag_us"]] == expected
        assert answer["since"] == start and answer["until"] == end
        before = proc.call("GET", lag_query(start, split_at), headers=service)[1]
        after = proc.call("GET", lag_query(split_at, end), headers=service)[1]
        assert (before["payments"], after["payments"]) == (1, CHECKOUTS - 1)
        assert (before["notified"], after["notified"]) == (1, CHECKOUTS - 1)
        later = proc.call("GET", lag_query(end + 3600, end + 7200), headers=service)[1]
        assert later == {"since": end + 3600, "until": end + 7200, "payments": 0,
                         "notified": 0, "lag_us": []}
        empty = proc.call("GET", lag_query(start, start), headers=service)[1]
        assert empty["payments"] == 0 and empty["lag_us"] == []


def test_the_components_answer_their_part_where_they_are_hosted(placement, sku):
    """The internal twins behind the client stubs: billing counts, notify reports lags."""
    _, api, _ = placement
    start, end, paid = paid_window(api, sku)
    window = {"since": start, "until": end}
    for _, hosted, proc, credential in processes(placement):
        service = {SERVICE_HEADER: credential}
        count = proc.call("POST", "/internal/billing/payments", window, service)
        lags = proc.call("POST", "/internal/notify/lags", window, service)
        if "billing" in hosted:
            assert count == (200, {"payments": CHECKOUTS})
        else:
            assert_error(count, 404)
        if "notify" in hosted:
            assert lags[0] == 200 and sum(c for _, c in lags[1]["lag_us"]) == CHECKOUTS
            assert sorted(lag for lag, c in lags[1]["lag_us"] for _ in range(c)) == \
                sorted(lag for _, lag in paid)
        else:
            assert_error(lags, 404)


@pytest.mark.parametrize("query,status", [
    ("", 400), ("?since=1", 400), ("?until=1", 400), ("?since=&until=1", 400),
    ("?since=x&until=1", 400), ("?since=1&until=nan", 400), ("?since=-inf&until=1", 400),
    ("?since=1&until=1e400", 400), ("?since=2&until=1", 422)])
def test_a_bad_window_is_a_json_4xx(placement, query, status):
    for _, _, proc, credential in processes(placement):
        assert_error(proc.call("GET", PAYMENT_LAG_PATH + query,
                               headers={SERVICE_HEADER: credential}), status)


@pytest.mark.parametrize("body,status", [
    ({}, 400), ({"since": 1}, 400), ({"since": "1", "until": 2}, 400),
    ({"since": True, "until": 2}, 400), ({"since": None, "until": 2}, 400),
    ({"since": 1, "until": 10**400}, 400), ({"since": 2, "until": 1}, 422),
    ({"since": 1, "until": 2}, 200)])
def test_a_bad_window_to_a_component_is_a_json_4xx(placement, body, status):
    for _, hosted, proc, credential in processes(placement):
        service = {SERVICE_HEADER: credential}
        for component, path in (("billing", "/internal/billing/payments"),
                                ("notify", "/internal/notify/lags")):
            if component in hosted:
                result = proc.call("POST", path, body, service)
                if status == 200:
                    assert result[0] == 200, result
                else:
                    assert_error(result, status)
                assert_error(proc.call("POST", path, {"since": 1, "until": 2}), 403)


def test_the_questions_need_the_credential_and_are_not_public(placement):
    name, api, _ = placement
    for _, _, proc, _ in processes(placement):
        for headers in ({}, {SERVICE_HEADER: "guess"}):
            assert_error(proc.call("GET", lag_query(1.0, 2.0), headers=headers), 403)
    split = topology_of(name).gateway
    assert_error(api.call("GET", lag_query(1.0, 2.0), headers={SERVICE_HEADER: "guess"}),
                 404 if split else 403)


def test_the_harness_reads_the_lag_of_a_window(placement, sku):
    """bench/system/shopquery.py over the launched placements: payments, and every lag in µs."""
    _, api, shop = placement
    if shop is None:
        pytest.skip("the harness talks to launched processes")
    start, end, paid = paid_window(api, sku)
    reading = notification_lag(shop, start, end, settle_s=10)
    assert reading.payments == CHECKOUTS and reading.notified == CHECKOUTS
    assert reading.clamped == 0
    expected = hdr.new_histogram()
    for _, lag in paid:
        expected.record_value(max(1, lag))
    assert hdr.encode(reading.histogram) == hdr.encode(expected)
    assert payment_lag(shop.deployment, end + 60, end + 120)["payments"] == 0


@pytest.mark.parametrize("k", range(MAX_HOPS + 1))
def test_the_chain_walks_the_path_the_hop_counts_follow(user, k):
    assert user.call("GET", f"/chain?k={k}") == (200, {"path": chain_path(k), "hops": k})
