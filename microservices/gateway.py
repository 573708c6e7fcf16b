"""The gateway: the one public address of a split shop, routing by path prefix.

It also runs the one public use case that belongs at the edge when shard calls cross a
hop: ``/search/scatter`` fans out from here to the search process's shard endpoint.

Only the public API passes; ``/internal/...`` and anything unknown get a JSON 404 here and
never reach a service. Only the headers the public API uses are forwarded, so a client's
own service-credential header never is.
"""
from __future__ import annotations

from urllib.parse import quote

from flask import Flask, Response, request
from werkzeug.exceptions import MethodNotAllowed

from shop.auth.client import AuthClient
from shop.balance import ReplicaSet, hop_events, hop_for
from shop.chain.api import CHAIN_ORDER
from shop.errors import NotFound
from shop.hops import HopClient
from shop.openapi import allow_for, openapi_document
from shop.placement import GATEWAY, Deployment, api_shape, remote_leaves
from shop.readiness import Dependencies
from shop.search.leaves import Scatter
from shop.search.routes import scatter_blueprint
from shop.server import deployment_from_env, threads_from_env
from shop.telemetry import telemetry_from_env
from shop.topology import LEAF_EDGE
from shop.tracing import tracer_from_env
from shop.web import body_bytes, create_base_app

PUBLIC_AUTH_PATHS = ("/auth/register", "/auth/login")
CHAIN_PATH = "/chain"  # served where the chain starts: the process hosting its first link
ROUTED_SEGMENTS = ("search", "billing", "notify")  # first path segment -> owning component
FORWARDED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Accept")
IDEMPOTENT_METHODS = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
# Endpoints that store a result by Idempotency-Key and replay it: only there does the header
# make a resend safe. A header alone proves nothing: an endpoint joins this set only when it
# honours the key end to end (tests/e2e/test_topup_kill.py kills billing under it).
KEYED_ENDPOINTS = {"/billing/checkout", "/billing/topup"}


def owner_of(path: str) -> str | None:
    """The component that serves a public path, or None (internal and unknown paths)."""
    if path in PUBLIC_AUTH_PATHS:
        return "auth"
    if path == CHAIN_PATH:
        return CHAIN_ORDER[0]
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in ROUTED_SEGMENTS else None


def is_idempotent(method: str, path: str, headers) -> bool:
    """Safe to send twice: a safe method, a login, or a call carrying an Idempotency-Key to
    an endpoint that honours the key end to end (``KEYED_ENDPOINTS``)."""
    return (method in IDEMPOTENT_METHODS or path == "/auth/login"
            or (path in KEYED_ENDPOINTS and "Idempotency-Key" in headers))


def upstream_target(path: str, query: bytes) -> str:
    """The request-target to forward: Flask hands us the path decoded, so escape it again
    (a space or a quote in an order id must not reach the upstream request line raw)."""
    target = quote(path, safe="/:@!$&'()*+,;=~")
    if query:
        target += "?" + quote(query, safe="=&%+/:;,?@!$'()*~")  # bytes: kept byte for byte
    return target


def create_app(deployment: Deployment | None = None) -> Flask:
    """App factory; with no arguments, reads what ``seambench up`` passed in the environment."""
    if deployment is None:
        deployment, _ = deployment_from_env()
    topo = deployment.topology
    telemetry = telemetry_from_env()
    threads = threads_from_env()
    tracer = tracer_from_env("gateway")  # None unless SEAMBENCH_TRACE_RATIO is set
    # One hop per process; a replicated one's balances over its replicas (shop/balance.py).
    hops = {proc: hop_for(deployment.urls_of(proc), deployment.service_credential,
                          deployment.hop_settings(GATEWAY, proc), proc,
                          observer=telemetry.hop_observer(proc), threads=threads,
                          tracer=tracer)
            for proc in topo.processes}
    for proc, hop in hops.items():
        hop_events(hop, telemetry.resilience_observer(proc))
    # Ready when every component process answers (a leaf server's loss shows in the scatter).
    dependencies = Dependencies({proc: deployment.urls_of(proc) for proc in topo.processes})
    app = create_base_app("gateway", deployment.service_credential, telemetry, dependencies.down,
                          api_shape(deployment), tracer)
    if topo.shard_calls == "http":  # the scatter runs here, each leaf call a hop
        # Leaf calls have hops of their own (the "leaf" edge: no bulkhead, no breaker, no
        # retry; the scatter's pool bounds them and hedging is its answer to a slow leaf),
        # so a scatter never competes with the public API's calls to search for a place.
        leaf_settings = deployment.hop_settings(GATEWAY, LEAF_EDGE)
        observed_as = "leaf" if topo.leaves.processes else topo.process_of("search")
        leaf_hops: dict[str, HopClient | ReplicaSet] = {}

        def leaf_hop(server: str) -> HopClient | ReplicaSet:
            if server not in leaf_hops:
                leaf_hops[server] = hop_for(deployment.urls_of(server),
                                            deployment.service_credential, leaf_settings, server,
                                            observer=telemetry.hop_observer(observed_as),
                                            tracer=tracer)
            return leaf_hops[server]

        scatter = Scatter(remote_leaves(deployment, leaf_hop),
                          observer=telemetry.scatter_observer())
        scatter.carry_context = tracer is not None
        app.register_blueprint(scatter_blueprint(scatter, AuthClient(hops[topo.process_of("auth")])))

        @app.route("/search/scatter", methods=["POST", "PUT", "DELETE", "PATCH"])
        def scatter_wrong_method() -> Response:
            raise MethodNotAllowed(valid_methods=["GET", "HEAD", "OPTIONS"])  # as the monolith

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def forward(path: str) -> Response:
        component = owner_of(request.path)
        if component is None:
            raise NotFound(f"no route for {request.path}")
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        target = upstream_target(request.path, request.query_string)
        upstream = hops[topo.process_of(component)].send(
            request.method, target, body_bytes(), headers,
            idempotent=is_idempotent(request.method, request.path, request.headers))
        response = Response(upstream.data, status=upstream.status,
                            content_type=upstream.content_type)
        if upstream.retry_after is not None:
            response.headers["Retry-After"] = upstream.retry_after
        if upstream.allow is not None:
            response.headers["Allow"] = upstream.allow
        return response

    document = openapi_document(api_shape(deployment))

    @app.before_request
    def options() -> Response | None:
        """OPTIONS names what the public path allows, as the monolith's Flask would: the
        gateway's own catch-all routes take every method, so its automatic answer would not."""
        if request.method != "OPTIONS":
            return None
        allow = allow_for(document, request.path)
        if allow is None:
            raise NotFound(f"no route for {request.path}")
        response = Response(status=200)
        response.headers["Allow"] = allow
        return response

    return app
