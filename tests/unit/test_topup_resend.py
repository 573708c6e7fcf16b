"""Finding 1, reproduced deterministically: billing commits a keyed top-up and its answer
never arrives (the worker died after the commit). The gateway's hop resends a keyed top-up
(``KEYED_ENDPOINTS``); whether money is created depends only on the endpoint honouring the
key. Against the old top-up (the key ignored) the resend credits twice; against the real one,
once."""
from __future__ import annotations

import json

import pytest

from bench.system.faultproxy import read_request
from microservices.gateway import is_idempotent
from shop.billing.service import SCHEMA as BILLING_SCHEMA
from shop.billing.service import BillingService
from shop.events import OUTBOX_SCHEMA, Outbox
from shop.hops import HopClient, HopSettings
from tests.fakes import FakeSearch
from tests.unit.test_hops import response, serve

AMOUNT = 500


def billing_that_dies_after_the_first_commit(billing: BillingService, honour_key: bool):
    """A connection handler: each request is a top-up; the first one is committed and then
    the connection is dropped without an answer, as when the worker is killed right after."""
    dropped = []

    def handle(conn, seen):
        buffer = bytearray()
        while (request := read_request(conn, buffer)) is not None:
            head, _, body = request.partition(b"\r\n\r\n")
            headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
            key = headers.get(b"Idempotency-Key", b"").decode() or None
            billing.topup("u1", json.loads(body)["amount_cents"], key if honour_key else None)
            if not dropped:
                dropped.append(True)
                return  # committed; the answer is lost with the worker
            conn.sendall(response(200, {"balance_cents": billing.balance("u1")}))

    return handle


@pytest.mark.parametrize("honour_key, credited", [(False, 2 * AMOUNT), (True, AMOUNT)])
def test_a_resent_keyed_topup_is_credited_once_only_if_the_endpoint_honours_the_key(
        db, honour_key, credited):
    db.apply_schema(BILLING_SCHEMA + OUTBOX_SCHEMA)
    billing = BillingService(db, FakeSearch({}), Outbox(db))
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k-1"}
    assert is_idempotent("POST", "/billing/topup", headers)  # the gateway resends it
    with serve(billing_that_dies_after_the_first_commit(billing, honour_key)) as (url, _):
        hop = HopClient(url, "cred", HopSettings(backoff_ms=1), name="billing")
        answer = hop.send("POST", "/billing/topup", json.dumps({"amount_cents": AMOUNT}).encode(),
                          headers, idempotent=is_idempotent("POST", "/billing/topup", headers))
    assert answer.status == 200
    assert billing.balance("u1") == credited
