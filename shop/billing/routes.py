"""Billing over HTTP: the caller's wallet, checkout and orders; RPC twins for the stub."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, request

from shop.auth.api import Auth
from shop.billing.api import Billing, LineItem, Receipt
from shop.errors import InvalidRequest
from shop.web import (caller, field, json_body, json_response, number_field,
                      require_service_credential)

IDEMPOTENCY_HEADER = "Idempotency-Key"


def parse_items(body: dict[str, Any]) -> list[LineItem]:
    items = []
    for raw in field(body, "items", list):
        if not isinstance(raw, dict):
            raise InvalidRequest("each item must be an object with 'sku' and 'qty'")
        items.append(LineItem(field(raw, "sku", str), field(raw, "qty", int)))
    return items


def receipt_response(receipt: Receipt) -> Response:
    return json_response(asdict(receipt), 201)


def blueprint(billing: Billing, auth: Auth) -> Blueprint:
    bp = Blueprint("billing", __name__)

    @bp.post("/billing/topup")
    def topup() -> Response:
        user_id = caller(auth).user_id
        amount = field(json_body(), "amount_cents", int)
        key = request.headers.get(IDEMPOTENCY_HEADER)  # optional: without it, sent once only
        return json_response({"balance_cents": billing.topup(user_id, amount, key)})

    @bp.get("/billing/balance")
    def balance() -> Response:
        return json_response({"balance_cents": billing.balance(caller(auth).user_id)})

    @bp.post("/billing/checkout")
    def checkout() -> Response:
        user_id = caller(auth).user_id
        items = parse_items(json_body())
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            raise InvalidRequest(f"missing {IDEMPOTENCY_HEADER} header")
        return receipt_response(billing.checkout(user_id, items, key))

    @bp.get("/billing/orders/<order_id>")
    def order(order_id: str) -> Response:
        return json_response(asdict(billing.order(caller(auth).user_id, order_id)))

    @bp.post("/internal/billing/topup")
    def topup_internal() -> Response:
        require_service_credential()
        body = json_body()
        key = body.get("idempotency_key")
        balance = billing.topup(field(body, "user_id", str), field(body, "amount_cents", int),
                                None if key is None else field(body, "idempotency_key", str))
        return json_response({"balance_cents": balance})

    @bp.post("/internal/billing/balance")
    def balance_internal() -> Response:
        require_service_credential()
        return json_response({"balance_cents": billing.balance(field(json_body(), "user_id", str))})

    @bp.post("/internal/billing/checkout")
    def checkout_internal() -> Response:
        require_service_credential()
        body = json_body()
        return receipt_response(billing.checkout(field(body, "user_id", str), parse_items(body),
                                                 field(body, "idempotency_key", str)))

    @bp.post("/internal/billing/order")
    def order_internal() -> Response:
        require_service_credential()
        body = json_body()
        return json_response(asdict(billing.order(field(body, "user_id", str),
                                                  field(body, "order_id", str))))

    @bp.post("/internal/billing/payments")
    def payments_internal() -> Response:
        require_service_credential()
        body = json_body()
        return json_response({"payments": billing.payments(number_field(body, "since"),
                                                           number_field(body, "until"))})

    return bp
