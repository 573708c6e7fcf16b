"""The call graph of each journey request kind, asked of a running placement.

For each kind the probe sends a few requests one at a time (untimed set-up work, before the
trials) and reads every server's /metrics counters before and after: the hops each server
made per request, by the process it called, and the requests each server answered per
request, by route. Events billing publishes are waited for (the outbox drained), so the
relay's deliveries to notify are counted with the request that caused them. In a placement
where every component has its own process, that is the component call graph the prediction
model needs (bench/experiments/predict/model.py); in others it says what crossed a process boundary.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from bench.system.shopclient import ShopClient
from bench.system.shopquery import ShopQueryError, count_rows, outbox_backlog, shop_counts

CALL_GRAPH = "call_graph.json"  # in the run directory: placement -> probe_call_graph's answer
PROBES_PER_KIND = 8
SETTLE_S = 5.0  # the longest wait for the outbox to be delivered after a kind's requests


def kind_request(kind: str, i: int) -> tuple[str, str, dict | None, dict[str, str]]:
    """(method, path, body, extra headers) of one request of ``kind``, shaped like the
    journey's (bench/experiments/journey/scenario.py)."""
    if kind == "search":
        return "GET", "/search?q=lamp&limit=10", None, {}
    if kind == "checkout":
        return ("POST", "/billing/checkout", {"items": [{"sku": f"SKU-{1 + i:06d}", "qty": 1}]},
                {"Idempotency-Key": uuid.uuid4().hex})
    if kind == "inbox":
        return "GET", "/notify/inbox", None, {}
    if kind == "topup":
        return "POST", "/billing/topup", {"amount_cents": 500_000}, {}
    raise ValueError(f"no probe for request kind {kind!r}")


def probe_call_graph(shop: Any, token: str, kinds: tuple[str, ...],
                     per_kind: int = PROBES_PER_KIND) -> dict[str, Any]:
    """kind -> {"hops": {server: {dependency: per request}}, "requests": {server: {route:
    per request}}} for a running shop (``RunningShop`` or a target) and a funded user's
    bearer ``token``. Raises ShopQueryError when a server does not answer its /metrics and
    RuntimeError when a probe request is refused."""
    client = ShopClient(shop.base_url)
    client.token = token
    graph: dict[str, Any] = {}
    try:
        for kind in kinds:
            before = shop_counts(shop)
            for i in range(per_kind):
                method, path, body, headers = kind_request(kind, i)
                status, answer = client.call(method, path, body, headers)
                if status >= 400:
                    raise RuntimeError(f"call-graph probe: {method} {path} answered {status}: "
                                       f"{answer}")
            _drained(shop)
            after = shop_counts(shop)
            graph[kind] = {part: _per_request(before, after, part, per_kind)
                           for part in ("hops", "requests")}
    finally:
        client.close()
    return graph


def _drained(shop: Any) -> None:
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        try:
            if outbox_backlog(shop) == 0:
                return
        except ShopQueryError:
            return  # counted as it stands: a backlog the probe cannot read is not waited for
        time.sleep(0.05)


def _per_request(before: dict, after: dict, part: str, n: int) -> dict[str, dict[str, float]]:
    kind = "hop" if part == "hops" else "request"
    out: dict[str, dict[str, float]] = {}
    for row in count_rows(before, after):
        if row["kind"] == kind:
            out.setdefault(row["server"], {})[row["name"]] = round(row["count"] / n, 3)
    return out
