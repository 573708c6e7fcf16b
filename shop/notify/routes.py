"""Notify over HTTP: the caller's inbox, and internal event delivery."""
from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, request

from shop.auth.api import Auth
from shop.errors import InvalidRequest, NotFound
from shop.events import EVENT_ID, PaymentCaptured
from shop.notify.api import INBOX_PAGE, Notification, Notify
from shop.web import (caller, field, json_body, json_response, number_field,
                      require_service_credential)


def parse_event(body: dict) -> PaymentCaptured:
    """A PaymentCaptured from JSON, every field of its type; a finite time. InvalidRequest."""
    occurred_at = number_field(body, "occurred_at")
    return PaymentCaptured(event_id=field(body, "event_id", str), order_id=field(body, "order_id", str),
                           user_id=field(body, "user_id", str),
                           total_cents=field(body, "total_cents", int), occurred_at=occurred_at)


def inbox_page(notes: list[Notification]) -> dict:
    """A page of an inbox as JSON: its notifications, and ``next_before``, the cursor of the
    next (older) page when this one is full, else null."""
    return {"notifications": [asdict(n) for n in notes],
            "next_before": notes[0].event_id if len(notes) >= INBOX_PAGE else None}


def blueprint(notify: Notify, auth: Auth) -> Blueprint:
    bp = Blueprint("notify", __name__)

    @bp.get("/notify/inbox")
    def inbox() -> Response:
        principal = caller(auth)
        before = request.args.getlist("before")
        if before and not EVENT_ID.fullmatch(before[0]):  # no event of ours has that id
            raise NotFound(f"before: no notification {before[0]!r} in this inbox")
        return json_response(inbox_page(notify.inbox(principal.user_id,
                                                     before[0] if before else None)))

    @bp.post("/internal/notify/inbox")
    def inbox_internal() -> Response:
        require_service_credential()
        body = json_body()
        before = body.get("before")
        if before is not None and not isinstance(before, str):
            raise InvalidRequest("'before' must be a string or null")
        return json_response(inbox_page(notify.inbox(field(body, "user_id", str), before)))

    @bp.post("/internal/notify/deliver")
    def deliver() -> Response:
        require_service_credential()
        stored = notify.deliver(parse_event(json_body()))
        return json_response({"status": "stored" if stored else "duplicate"})

    @bp.post("/internal/notify/lags")
    def lags_internal() -> Response:
        require_service_credential()
        body = json_body()
        counts = notify.lags(number_field(body, "since"), number_field(body, "until"))
        return json_response({"lag_us": [list(pair) for pair in counts]})

    return bp
