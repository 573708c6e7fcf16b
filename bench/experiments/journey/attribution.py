"""Where each millisecond of a traced journey request goes, from its spans (shop/tracing.py).

A trace's root is the SERVER span of the edge process (the gateway, or the monolith) for one
journey request. Its duration is split, exactly, into:

- edge code: the root's own time (its span less its children): the gateway's routing, or
  in the monolith everything the shop does;
- serialization: the INTERNAL "encode" and "parse" spans around JSON bodies, both ends;
- network: per hop, the least send-to-answer gap seen on that edge in the window (the CLIENT
  span less the callee's SERVER span: kernel, HTTP framing, the callee's accept at best);
- queueing: per hop, the rest of the gap (waiting for a connection, a worker thread, a core);
- callee work: the callees' own time (their SERVER spans less their children).

Before the root, the request travelled from the generator to the edge process and back: not
in any span. The caller (journey/tracing.py) sets it at the least gap of any hop traced in
the run (the same loopback and gunicorn path, nothing queued), so the parts of the median
request can be checked against the p50 the generator measured. Times here are µs.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PARTS = ("edge code", "serialization", "network", "queueing", "callee work")
KINDS = {("GET", "/search"): "search", ("POST", "/billing/checkout"): "checkout",
         ("GET", "/notify/inbox"): "inbox", ("POST", "/billing/topup"): "topup"}
SERIALIZATION = ("encode", "parse")


def kind_of(span: Mapping[str, Any]) -> str | None:
    attributes = span.get("attributes", {})
    return KINDS.get((attributes.get("http.request.method"), attributes.get("url.path")))


def _us(span: Mapping[str, Any]) -> float:
    return (span["end_ns"] - span["start_ns"]) / 1000.0


@dataclass
class Hop:
    """One call: caller process -> callee process, its gap (µs: client span less the callee's
    server span; the whole client span when the callee's span is missing)."""

    edge: str
    gap_us: float
    client: Mapping[str, Any]
    server: Mapping[str, Any] | None


@dataclass
class Request:
    kind: str
    root: Mapping[str, Any]
    own_us: float = 0.0  # the root's own time
    serialization_us: float = 0.0
    callee_us: float = 0.0
    hops: list[Hop] = field(default_factory=list)

    @property
    def total_us(self) -> float:
        return _us(self.root)


class TraceIndex:
    """Spans by id and by parent, for walking traces."""

    def __init__(self, spans: Iterable[Mapping[str, Any]]) -> None:
        self.children: dict[str, list[Mapping[str, Any]]] = {}
        self.roots: list[Mapping[str, Any]] = []
        for span in spans:
            parent = span.get("parent_span_id")
            if parent is None:
                self.roots.append(span)
            else:
                self.children.setdefault(parent, []).append(span)

    def request(self, root: Mapping[str, Any], kind: str) -> Request:
        """The root's request, its hops and own times gathered (gaps not yet split)."""
        request = Request(kind, root)
        self._walk(root, request, is_root=True)
        return request

    def _walk(self, server: Mapping[str, Any], request: Request, is_root: bool) -> None:
        own = _us(server)
        for child in self.children.get(server["span_id"], ()):
            own -= _us(child)
            if child["kind"] == "client":
                callee = next((s for s in self.children.get(child["span_id"], ())
                               if s["kind"] == "server"), None)
                gap = _us(child) - (_us(callee) if callee is not None else 0.0)
                edge = f"{server.get('service')}->{child['attributes'].get('seambench.callee')}"
                request.hops.append(Hop(edge, gap, child, callee))
                if callee is not None:
                    self._walk(callee, request, is_root=False)
            elif child["name"] in SERIALIZATION:
                request.serialization_us += _us(child)
            else:  # another internal span: its caller's own time
                own += _us(child)
        if is_root:
            request.own_us += own
        else:
            request.callee_us += own


def requests_in(spans: Sequence[Mapping[str, Any]],
                windows: Sequence[tuple[float, float]]) -> list[Request]:
    """The journey requests whose root began inside one of ``windows`` (epoch s)."""
    index = TraceIndex(spans)
    chosen = []
    for root in index.roots:
        kind = kind_of(root) if root["kind"] == "server" else None
        start_s = root["start_ns"] / 1e9
        if kind is not None and any(a <= start_s < b for a, b in windows):
            chosen.append(index.request(root, kind))
    return chosen


def edge_floors(requests: Sequence[Request]) -> dict[str, float]:
    """Per edge, the least gap seen (µs): the network path with nothing queued."""
    floors: dict[str, float] = {}
    for request in requests:
        for hop in request.hops:
            if hop.server is not None:
                floors[hop.edge] = min(floors.get(hop.edge, hop.gap_us), hop.gap_us)
    return floors


def parts_of(request: Request, floors: Mapping[str, float]) -> dict[str, float]:
    """The request's root split into PARTS (µs), adding up to its duration."""
    network = queueing = 0.0
    for hop in request.hops:
        floor = min(floors.get(hop.edge, hop.gap_us), hop.gap_us)
        network += floor
        queueing += hop.gap_us - floor
    return {"edge code": request.own_us, "serialization": request.serialization_us,
            "network": network, "queueing": queueing, "callee work": request.callee_us}


def at_percentile(requests: Sequence[Request], q: float) -> Request | None:
    """The request whose root duration is the q-th percentile (HdrHistogram's rule)."""
    if not requests:
        return None
    ordered = sorted(requests, key=lambda r: r.total_us)
    rank = max(1, int(np.floor(q * len(ordered) / 100.0 + 0.5)))
    return ordered[min(rank, len(ordered)) - 1]


def attribute(spans: Sequence[Mapping[str, Any]], windows: Sequence[tuple[float, float]],
              edge_floor_us: float | None) -> dict[str, Any]:
    """The attribution of one traced placement's journey requests in ``windows``: per kind
    (and all kinds together) the median and p99 request's parts and the mean parts; per edge
    the calls per request, the network floor and the mean queueing; and the median request's
    parts plus ``edge_floor_us`` (before the edge process), for checking against the p50
    the generator measured."""
    requests = requests_in(spans, windows)
    floors = edge_floors(requests)
    by_kind: dict[str, list[Request]] = {}
    for request in requests:
        by_kind.setdefault(request.kind, []).append(request)
    kinds = {kind: _kind_entry(rs, floors) for kind, rs in sorted(by_kind.items())}
    everything = _kind_entry(requests, floors) if requests else None
    edges: dict[str, dict[str, float]] = {}
    for request in requests:
        for hop in request.hops:
            entry = edges.setdefault(hop.edge, {"calls": 0, "gap_us": 0.0})
            entry["calls"] += 1
            entry["gap_us"] += hop.gap_us
    edge_rows = {edge: {"calls_per_request": e["calls"] / len(requests),
                        "network_us": floors.get(edge), "mean_gap_us": e["gap_us"] / e["calls"],
                        "mean_queueing_us": e["gap_us"] / e["calls"] - floors.get(edge, 0.0)}
                 for edge, e in sorted(edges.items())} if requests else {}
    median = everything["median"] if everything else None
    return {"requests": len(requests), "kinds": kinds, "all": everything, "edges": edge_rows,
            "edge_floor_us": edge_floor_us,
            "median_with_edge_us": (median["total_us"] + edge_floor_us
                                    if median is not None and edge_floor_us is not None else None)}


def _kind_entry(requests: Sequence[Request], floors: Mapping[str, float]) -> dict[str, Any]:
    def described(request: Request | None) -> dict[str, Any] | None:
        if request is None:
            return None
        return {"total_us": request.total_us, "parts_us": parts_of(request, floors),
                "trace_id": request.root["trace_id"], "hops": len(request.hops)}

    mean = {part: float(np.mean([parts_of(r, floors)[part] for r in requests])) for part in PARTS}
    return {"requests": len(requests), "median": described(at_percentile(requests, 50.0)),
            "p99": described(at_percentile(requests, 99.0)) if len(requests) >= 100 else None,
            "mean_parts_us": mean, "mean_total_us": float(np.mean([r.total_us for r in requests]))}


def waterfall_spans(spans: Sequence[Mapping[str, Any]], trace_id: str) -> list[dict[str, Any]]:
    """One trace's spans, depth-first from its root, each with its depth and its offset from
    the root's start (µs): what a waterfall draws."""
    members = [s for s in spans if s["trace_id"] == trace_id]
    index = TraceIndex(members)
    if not index.roots:
        return []
    root = min(index.roots, key=lambda s: s["start_ns"])
    out: list[dict[str, Any]] = []

    def visit(span: Mapping[str, Any], depth: int) -> None:
        out.append({"label": f"{span.get('service')}: {span['name']}", "kind": span["kind"],
                    "depth": depth, "start_us": (span["start_ns"] - root["start_ns"]) / 1000.0,
                    "duration_us": _us(span)})
        for child in sorted(index.children.get(span["span_id"], ()), key=lambda s: s["start_ns"]):
            visit(child, depth + 1)

    visit(root, 0)
    return out
