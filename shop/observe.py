"""What the harness asks a running shop, answered by any of its processes (not the gateway).

``GET /internal/observe/payment-lag?since=&until=`` (service credential): how many payments
were captured in [since, until) (seconds since the epoch) and the notification lag of every
notification for them, as ``(lag µs, count)`` pairs. Both come through the components'
interfaces (``Billing.payments``, ``Notify.lags``): a function call where this process hosts
the component, a hop where another does. So the answer is the same in every placement and
for any database; the harness never opens a component's storage.

Ask the process hosting notify: the lags are then read locally and only the count may hop.
"""
from __future__ import annotations

from flask import Blueprint, Response

from shop.billing.api import Billing
from shop.events import check_window
from shop.notify.api import Notify
from shop.web import float_arg, json_response, require_service_credential

PAYMENT_LAG_PATH = "/internal/observe/payment-lag"


def blueprint(billing: Billing, notify: Notify) -> Blueprint:
    bp = Blueprint("observe", __name__)

    @bp.get(PAYMENT_LAG_PATH)
    def payment_lag() -> Response:
        require_service_credential()
        since, until = float_arg("since"), float_arg("until")
        check_window(since, until)  # before any hop
        payments = billing.payments(since, until)  # first: a payment counted is one that
        counts = notify.lags(since, until)  # committed, so notified >= payments means all are
        return json_response({"since": since, "until": until, "payments": payments,
                              "notified": sum(count for _, count in counts),
                              "lag_us": [list(pair) for pair in counts]})

    return bp
