"""Attribution of traced requests (bench/experiments/journey/attribution.py) on traces whose
every part is known: the parts add up to the root exactly and land where they were planted."""
from __future__ import annotations

import itertools

import pytest

from bench.experiments.journey.attribution import (PARTS, attribute, parts_of, requests_in,
                                                   waterfall_spans)

US = 1000  # ns
_ids = itertools.count(1)


def span(trace, name, kind, service, start_us, end_us, parent=None, **attributes):
    return {"trace_id": trace, "span_id": f"{next(_ids):016x}", "parent_span_id": parent,
            "name": name, "kind": kind, "service": service, "start_ns": int(start_us * US),
            "end_ns": int(end_us * US), "attributes": attributes}


def checkout(trace: str, t0: float, queued_us: float = 0.0) -> list[dict]:
    """gateway 0..1000: routes 50 µs, hop to billing (gap 100 + queued), billing works 300,
    encodes 20, parses 30, asks auth over a hop (gap 80), auth works 120 and encodes 10."""
    root = span(trace, "POST /<path:path>", "server", "gateway", t0, t0 + 1000 + queued_us,
                **{"http.request.method": "POST", "url.path": "/billing/checkout"})
    hop1 = span(trace, "hop billing", "client", "gateway", t0 + 50, t0 + 1000 + queued_us,
                root["span_id"], **{"seambench.callee": "billing"})
    billing = span(trace, "POST /billing/checkout", "server", "billing", t0 + 100 + queued_us,
                   t0 + 950 + queued_us, hop1["span_id"])
    b = t0 + 100 + queued_us
    parse = span(trace, "parse", "internal", "billing", b, b + 30, billing["span_id"])
    hop2 = span(trace, "hop auth", "client", "billing", b + 30, b + 30 + 210, billing["span_id"],
                **{"seambench.callee": "auth"})
    auth = span(trace, "POST /internal/auth/verify", "server", "auth", b + 70, b + 70 + 130,
                hop2["span_id"])
    auth_encode = span(trace, "encode", "internal", "auth", b + 190, b + 200, auth["span_id"])
    encode = span(trace, "encode", "internal", "billing", b + 830, b + 850, billing["span_id"])
    return [root, hop1, billing, parse, hop2, auth, auth_encode, encode]


def test_parts_add_up_to_the_root_and_land_where_they_were_planted():
    spans = checkout("a" * 32, 1_000_000.0) + checkout("b" * 32, 2_000_000.0, queued_us=400)
    requests = requests_in(spans, [(0.9, 2.1)])
    assert [r.kind for r in requests] == ["checkout", "checkout"]
    floors = {"gateway->billing": 100.0, "billing->auth": 80.0}
    plain, queued = (parts_of(r, floors) for r in requests)
    assert plain == {"edge code": 50.0, "serialization": 60.0, "network": 180.0,
                     "queueing": 0.0, "callee work": 710.0}
    assert sum(plain.values()) == pytest.approx(requests[0].total_us) == 1000.0
    assert queued["queueing"] == pytest.approx(400.0)  # the extra gap is queueing, not work
    assert sum(queued.values()) == pytest.approx(1400.0)


def test_the_network_floor_is_the_least_gap_per_edge_and_the_median_is_picked():
    spans = []
    for i, queued in enumerate([0, 400, 100, 200, 300]):
        spans += checkout(f"{i:032x}", 1_000_000.0 + 10_000 * i, queued)
    doc = attribute(spans, [(0.0, 10.0)], edge_floor_us=150.0)
    assert doc["requests"] == 5
    assert doc["edges"]["gateway->billing"]["network_us"] == pytest.approx(100.0)
    assert doc["edges"]["billing->auth"]["calls_per_request"] == 1.0
    assert doc["edges"]["gateway->billing"]["mean_queueing_us"] == pytest.approx(200.0)
    median = doc["kinds"]["checkout"]["median"]
    assert median["total_us"] == pytest.approx(1200.0)  # queued 200: the third of five
    assert median["parts_us"]["queueing"] == pytest.approx(200.0)
    assert doc["median_with_edge_us"] == pytest.approx(1350.0)
    assert doc["kinds"]["checkout"]["p99"] is None  # five requests support no p99
    assert set(doc["all"]["mean_parts_us"]) == set(PARTS)


def test_only_journey_requests_inside_the_windows_count():
    inside = checkout("c" * 32, 5_000_000.0)
    outside = checkout("d" * 32, 9_000_000.0)
    metrics = [span("e" * 32, "GET /metrics", "server", "gateway", 5_000_100.0, 5_000_200.0,
                    **{"http.request.method": "GET", "url.path": "/metrics"})]
    requests = requests_in(inside + outside + metrics, [(4.0, 6.0)])
    assert [r.root["trace_id"] for r in requests] == ["c" * 32]


def test_a_hop_whose_callee_span_is_missing_counts_its_whole_span_as_gap():
    spans = [s for s in checkout("f" * 32, 1_000_000.0) if s["service"] != "auth"]
    [request] = requests_in(spans, [(0.0, 10.0)])
    parts = parts_of(request, {})
    assert parts["network"] == pytest.approx(100.0 + 210.0)
    assert sum(parts.values()) == pytest.approx(1000.0)


def test_the_waterfall_lists_spans_depth_first_from_the_root():
    spans = checkout("9" * 32, 3_000_000.0)
    rows = waterfall_spans(spans, "9" * 32)
    assert [r["depth"] for r in rows] == [0, 1, 2, 3, 3, 4, 5, 3]
    assert rows[0]["start_us"] == 0 and rows[0]["duration_us"] == 1000.0
    assert rows[4]["label"] == "billing: hop auth" and rows[4]["start_us"] == pytest.approx(130.0)
    assert waterfall_spans(spans, "0" * 32) == []
