"""Notify over HTTP: the caller's inbox, and internal event delivery."""
from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response

from shop.auth.api import Auth
from shop.errors import InvalidRequest
from shop.events import PaymentCaptured
from shop.notify.api import Notify
from shop.web import caller, field, json_body, json_response, require_service_credential


def blueprint(notify: Notify, auth: Auth) -> Blueprint:
    bp = Blueprint("notify", __name__)

    @bp.get("/notify/inbox")
    def inbox() -> Response:
        principal = caller(auth)
        return json_response({"notifications": [asdict(n) for n in notify.inbox(principal.user_id)]})

    @bp.post("/internal/notify/inbox")
    def inbox_internal() -> Response:
        require_service_credential()
        notes = notify.inbox(field(json_body(), "user_id", str))
        return json_response({"notifications": [asdict(n) for n in notes]})

    @bp.post("/internal/notify/deliver")
    def deliver() -> Response:
        require_service_credential()
        body = json_body()
        try:
            event = PaymentCaptured.from_json(body)
        except (KeyError, TypeError, ValueError):
            raise InvalidRequest("not a PaymentCaptured event") from None
        stored = notify.deliver(event)
        return json_response({"status": "stored" if stored else "duplicate"})

    return bp
