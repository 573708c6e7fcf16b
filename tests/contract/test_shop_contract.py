"""The public API (shop/openapi.py), written once, run against every placement."""
from __future__ import annotations

import pytest
import requests

from tests.contract.conftest import User
from tests.placements import HttpApi, eventually


def assert_error(result, status: int, code: str | None = None) -> None:
    got, body = result
    assert got == status, body
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and "detail" in body, body
    if code:
        assert body["error"] == code, body


def test_register_and_login(api):
    user = User(api)
    assert len(user.token) > 20
    assert_error(api.call("POST", "/auth/register", {"username": user.username,
                                                     "password": "secret-pass"}), 409, "username_taken")
    assert_error(api.call("POST", "/auth/login", {"username": user.username, "password": "wrong-pass"}),
                 401, "invalid_credentials")


def test_a_password_guesser_is_made_to_wait(api):
    """Failed logins in a row for one username earn it a wait: 429, with Retry-After over
    HTTP, even for the right password; other users are not slowed."""
    from shop.auth.service import FREE_LOGIN_FAILURES
    victim, bystander = User(api), User(api)
    guess = {"username": victim.username, "password": "wrong-pass"}
    for _ in range(FREE_LOGIN_FAILURES):
        assert_error(api.call("POST", "/auth/login", guess), 401, "invalid_credentials")
    right = {"username": victim.username, "password": "secret-pass"}
    assert_error(api.call("POST", "/auth/login", right), 429, "too_many_attempts")
    if isinstance(api, HttpApi):
        response = requests.post(api.base_url + "/auth/login", json=guess, timeout=10)
        assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert api.call("POST", "/auth/login", {"username": bystander.username,
                                            "password": "secret-pass"})[0] == 200


def test_search_ranks_results(user):
    status, body = user.call("GET", "/search?q=steel%20kettle&limit=5")
    assert status == 200 and len(body["results"]) == 5
    top = body["results"][0]
    assert set(top) == {"sku", "name", "price_cents", "score"}
    assert "steel" in top["name"] and "kettle" in top["name"]
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_scatter_gathers_the_best_hits_of_the_first_n_shards(user):
    status, everything = user.call("GET", "/search/scatter?q=oak%20lamp&n=1&limit=100")
    assert status == 200 and everything["backups"] == 0
    shards = everything["of"]
    status, everything = user.call("GET", f"/search/scatter?q=oak%20lamp&n={shards}&limit=100")
    assert status == 200 and everything["shards"] == shards
    hits = everything["results"]
    assert hits and all("oak" in h["name"] or "lamp" in h["name"] for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # the first n shards' answer is exactly the hits of those shards, in the same order
    n = max(1, shards // 2)
    status, some = user.call("GET", f"/search/scatter?q=oak%20lamp&n={n}&limit=100")
    owned = [h for h in hits if (int(h["sku"].split("-")[1]) - 1) % shards < n]
    assert status == 200 and some["results"][:len(owned)] == owned[:len(some["results"])]
    assert_error(user.call("GET", f"/search/scatter?q=lamp&n={shards + 1}"), 422)
    hedged = user.call("GET", f"/search/scatter?q=oak%20lamp&n={shards}&limit=100&hedge_ms=5000")
    assert hedged[0] == 200 and hedged[1]["results"] == hits


def test_topup_checkout_order_and_inbox(user, sku):
    code, price = sku
    assert user.call("GET", "/billing/balance") == (200, {"balance_cents": 0})
    assert user.call("POST", "/billing/topup", {"amount_cents": 3 * price}) == (
        200, {"balance_cents": 3 * price})
    status, receipt = user.checkout([{"sku": code, "qty": 2}], key="order-1")
    assert status == 201, receipt
    assert receipt["total_cents"] == 2 * price and receipt["balance_cents"] == price
    status, order = user.call("GET", f"/billing/orders/{receipt['order_id']}")
    assert status == 200 and order["total_cents"] == 2 * price
    assert order["items"] == [{"sku": code, "qty": 2, "price_cents": price}]
    inbox = eventually(lambda: user.call("GET", "/notify/inbox")[1]["notifications"])
    assert [n["order_id"] for n in inbox] == [receipt["order_id"]]
    assert set(inbox[0]) == {"event_id", "order_id", "text", "created_at"}


def test_idempotent_replay_never_charges_twice(user, sku):
    code, price = sku
    user.call("POST", "/billing/topup", {"amount_cents": 5 * price})
    first = user.checkout([{"sku": code, "qty": 1}], key="same-key")
    again = user.checkout([{"sku": code, "qty": 1}], key="same-key")
    assert first[0] == again[0] == 201 and first[1] == again[1]
    assert user.call("GET", "/billing/balance")[1]["balance_cents"] == 4 * price
    assert_error(user.checkout([{"sku": code, "qty": 2}], key="same-key"), 422, "idempotency_key_reused")
    eventually(lambda: user.call("GET", "/notify/inbox")[1]["notifications"])
    assert len(user.call("GET", "/notify/inbox")[1]["notifications"]) == 1


def test_checkout_failures(user, sku):
    code, price = sku
    assert_error(user.checkout([{"sku": code, "qty": 1}]), 402, "insufficient_funds")
    user.call("POST", "/billing/topup", {"amount_cents": price})
    assert_error(user.checkout([{"sku": "SKU-999999", "qty": 1}]), 404, "unknown_sku")
    assert_error(user.call("POST", "/billing/checkout", {"items": [{"sku": code, "qty": 1}]}),
                 400, "invalid_request")  # no Idempotency-Key
    assert user.call("GET", "/billing/balance")[1]["balance_cents"] == price


def test_cross_user_isolation(user, other_user, sku):
    code, price = sku
    user.call("POST", "/billing/topup", {"amount_cents": price})
    status, receipt = user.checkout([{"sku": code, "qty": 1}])
    assert status == 201
    assert_error(other_user.call("GET", f"/billing/orders/{receipt['order_id']}"), 404)
    assert other_user.call("GET", "/billing/balance")[1]["balance_cents"] == 0
    eventually(lambda: user.call("GET", "/notify/inbox")[1]["notifications"])
    assert other_user.call("GET", "/notify/inbox") == (200, {"notifications": [],
                                                             "next_before": None})


def test_the_inbox_pages_to_its_oldest_notification(user, sku):
    """101 orders: the first page holds the newest 100 and a cursor, the next the oldest one
    and none; a cursor that is not of this inbox is a 422, and giving two a 400."""
    code, price = sku
    user.call("POST", "/billing/topup", {"amount_cents": price * 101})
    orders = [user.checkout([{"sku": code, "qty": 1}])[1]["order_id"] for _ in range(101)]

    def second_page() -> dict:
        cursor = user.call("GET", "/notify/inbox")[1]["next_before"]
        return cursor and user.call("GET", f"/notify/inbox?before={cursor}")[1]["notifications"]

    eventually(second_page)  # every notification delivered: the oldest is on page two
    status, first = user.call("GET", "/notify/inbox")
    assert status == 200 and len(first["notifications"]) == 100
    status, second = user.call("GET", f"/notify/inbox?before={first['next_before']}")
    assert status == 200 and second["next_before"] is None
    paged = [n["order_id"] for n in second["notifications"] + first["notifications"]]
    assert sorted(paged) == sorted(orders) and len(set(paged)) == 101
    assert_error(user.call("GET", "/notify/inbox?before=no-such-event"), 404, "not_found")
    assert_error(user.call("GET", "/notify/inbox?before=a&before=b"), 400, "invalid_request")


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/search?q=lamp", None), ("GET", "/billing/balance", None),
    ("POST", "/billing/topup", {"amount_cents": 100}), ("GET", "/notify/inbox", None),
    ("POST", "/billing/checkout", {"items": [{"sku": "SKU-000001", "qty": 1}]}),
    ("GET", "/billing/orders/abc", None), ("GET", "/search/scatter?q=lamp&n=2", None)])
def test_token_required(api, method, path, body):
    assert_error(api.call(method, path, body), 401)
    assert_error(api.call(method, path, body, {"Authorization": "Bearer not-a-token"}), 401)
    assert_error(api.call(method, path, body, {"Authorization": "Basic abc"}), 401)


def test_a_keyed_topup_is_credited_once_per_key(user):
    key = {"Idempotency-Key": "topup-1"}
    assert user.call("POST", "/billing/topup", {"amount_cents": 700}, key) == (200, {"balance_cents": 700})
    assert user.call("POST", "/billing/topup", {"amount_cents": 700}, key) == (200, {"balance_cents": 700})
    assert_error(user.call("POST", "/billing/topup", {"amount_cents": 5}, key), 422)
    assert user.call("POST", "/billing/topup", {"amount_cents": 300}) == (200, {"balance_cents": 1_000})
    assert user.call("GET", "/billing/balance") == (200, {"balance_cents": 1_000})


@pytest.mark.parametrize("suffix", ["....", "!!!!", "=="])
def test_a_token_with_anything_appended_is_refused(user, suffix):
    """A lenient base64 decoder would read the same MAC through the junk: in every placement
    the token has one spelling."""
    assert user.call("GET", "/billing/balance")[0] == 200
    forged = {"Authorization": f"Bearer {user.token}{suffix}"}
    assert_error(user.call("GET", "/billing/balance", headers=forged), 401)


@pytest.mark.parametrize("raw,status", [
    (b"{not json", 400), (b"[1, 2]", 400), (b"", 400), (b'{"username": "abc"}', 400),
    (b'{"username": 5, "password": "secret-pass"}', 400),
    (b'{"username": "a b", "password": "secret-pass"}', 422),
    (b'{"username": "okname", "password": "short"}', 422), (b"\xff\xfe", 400),
    (b'{"username": "alice\\n", "password": "secret-pass"}', 422),
    (b'{"username": "okname", "password": "\\ud800\\ud800\\ud800\\ud800"}', 400),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400)])
def test_bad_registration(api, raw, status):
    assert_error(api.call("POST", "/auth/register", raw=raw), status)


@pytest.mark.parametrize("body,status", [
    ({}, 400), ({"amount_cents": "100"}, 400), ({"amount_cents": 1.5}, 400),
    ({"amount_cents": True}, 400), ({"amount_cents": None}, 400), ({"amount_cents": -100}, 422),
    ({"amount_cents": 0}, 422), ({"amount_cents": 10**15}, 422), ({"amount_cents": 10**30}, 422)])
def test_bad_topup(user, body, status):
    assert_error(user.call("POST", "/billing/topup", body), status)
    assert user.call("GET", "/billing/balance")[1]["balance_cents"] == 0


@pytest.mark.parametrize("body,status", [
    ({"items": "SKU-000001"}, 400), ({"items": [{"sku": "SKU-000001"}]}, 400),
    ({"items": [{"sku": 1, "qty": 1}]}, 400), ({"items": ["SKU-000001"]}, 400),
    ({"items": []}, 422), ({"items": [{"sku": "SKU-000001", "qty": 0}]}, 422),
    ({"items": [{"sku": "SKU-000001", "qty": -3}]}, 422)])
def test_bad_checkout(user, body, status):
    user.call("POST", "/billing/topup", {"amount_cents": 1_000_000})
    assert_error(user.call("POST", "/billing/checkout", body, {"Idempotency-Key": "k"}), status)
    assert user.call("GET", "/billing/balance")[1]["balance_cents"] == 1_000_000


@pytest.mark.parametrize("query,status", [
    ("", 400), ("?q=", 422), ("?q=%21%21%21", 422), ("?q=lamp&limit=abc", 400),
    ("?q=lamp&limit=0", 422), ("?q=lamp&limit=1000", 422)])
def test_bad_search(user, query, status):
    assert_error(user.call("GET", "/search" + query), status)


@pytest.mark.parametrize("query,status", [
    ("?q=lamp&n=0", 422), ("?q=lamp&n=65", 422), ("?q=lamp&n=x", 400), ("?n=2", 400),
    ("?q=lamp&n=2&hedge_ms=0", 422), ("?q=lamp&n=2&hedge_ms=abc", 400),
    ("?q=lamp&n=2&hedge_ms=nan", 400), ("?q=lamp&n=2&delay=tail", 400),
    ("?q=lamp&n=2&seed=-1&delay=tail", 400), ("?q=lamp&n=2&seed=1&delay=tail", 400),
    ("?q=lamp&n=2&seed=x", 400), ("?q=lamp&n=2&hedge_share=0", 422),
    ("?q=lamp&n=2&hedge_share=0.6", 422), ("?q=lamp&n=2&hedge_share=nan", 400)])
def test_bad_scatter(user, query, status):
    assert_error(user.call("GET", "/search/scatter" + query), status)


def test_body_over_one_mib_is_413(user):
    assert_error(user.call("POST", "/billing/topup", raw=b"x" * (1024 * 1024 + 10)), 413)


def test_unknown_routes_and_methods_are_json(user):
    assert_error(user.call("GET", "/no/such/thing"), 404)
    assert_error(user.call("GET", "/"), 404)
    assert_error(user.call("DELETE", "/billing/balance"), 405)
    assert_error(user.call("GET", "/billing//balance"), 404)
    assert_error(user.call("POST", "/search/scatter?q=lamp", {}), 405)


def test_internal_endpoints_are_not_public(api, user):
    """Through the public address, an internal endpoint is unknown (gateway) or forbidden."""
    for path, body in [("/internal/auth/verify", {"token": user.token}),
                       ("/internal/notify/deliver", {}),
                       ("/internal/billing/topup", {"user_id": user.user_id, "amount_cents": 5})]:
        status, err = api.call("POST", path, body, {"X-Seambench-Service": "guess"})
        assert status in (403, 404), (path, status, err)
    assert user.call("GET", "/billing/balance")[1]["balance_cents"] == 0


def test_health_endpoints(api):
    assert api.call("GET", "/healthz")[0] == 200
    assert api.call("GET", "/readyz")[0] == 200


def test_odd_characters_in_an_order_id_are_a_plain_404(user):
    for order_id in ["a%20b", "%27%22%3C%3E", "%C3%A9", "x%2Fy", "..%2F..%2Fetc"]:
        assert_error(user.call("GET", f"/billing/orders/{order_id}"), 404)


@pytest.mark.parametrize("path", ["/search?q=lamp&limt=5", "/notify/inbox?page=2",
                                  "/billing/balance?x=1", "/chain?k=1&hops=2",
                                  "/search/scatter?q=lamp&n=2&delay=tail"])
def test_an_unknown_query_parameter_is_refused_by_name(user, path):
    """A typo is a 400 naming the parameter, not a default applied in silence (every
    operation takes only what /openapi.json names)."""
    status, body = user.call("GET", path)
    name = path.rsplit("&", 1)[-1].split("?")[-1].split("=")[0]
    assert status == 400 and body["error"] == "invalid_request" and repr(name) in body["detail"]


def test_a_query_parameter_given_twice_is_refused(user):
    status, body = user.call("GET", "/search?q=lamp&q=chair")
    assert status == 400 and "'q' at most once" in body["detail"]
