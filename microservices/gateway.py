"""The gateway: the one public address of a split shop, routing by path prefix.

Only the public API passes; ``/internal/...`` and anything unknown get a JSON 404 here and
never reach a service. Only the headers the public API uses are forwarded, so a client's
own service-credential header never is.
"""
from __future__ import annotations

from urllib.parse import quote

from flask import Flask, Response, request

from shop.errors import NotFound
from shop.hops import HopClient
from shop.placement import Deployment
from shop.server import deployment_from_env
from shop.web import create_base_app

PUBLIC_AUTH_PATHS = ("/auth/register", "/auth/login")
ROUTED_SEGMENTS = ("search", "billing", "notify")  # first path segment -> owning component
FORWARDED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Accept")
IDEMPOTENT_METHODS = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}


def owner_of(path: str) -> str | None:
    """The component that serves a public path, or None (internal and unknown paths)."""
    if path in PUBLIC_AUTH_PATHS:
        return "auth"
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in ROUTED_SEGMENTS else None


def upstream_target(path: str, query: bytes) -> str:
    """The request-target to forward: Flask hands us the path decoded, so escape it again
    (a space or a quote in an order id must not reach the upstream request line raw)."""
    target = quote(path, safe="/:@!$&'()*+,;=~")
    if query:
        target += "?" + quote(query.decode("latin-1"), safe="=&%+/:;,?@!$'()*~")
    return target


def create_app(deployment: Deployment | None = None) -> Flask:
    """App factory; with no arguments, reads what ``seambench up`` passed in the environment."""
    if deployment is None:
        deployment, _ = deployment_from_env()
    topo = deployment.topology
    hops = {proc: HopClient(deployment.urls[proc], deployment.service_credential, deployment.hop)
            for proc in topo.processes}
    app = create_base_app("gateway", deployment.service_credential)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def forward(path: str) -> Response:
        component = owner_of(request.path)
        if component is None:
            raise NotFound(f"no route for {request.path}")
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        target = upstream_target(request.path, request.query_string)
        upstream = hops[topo.process_of(component)].send(
            request.method, target, request.get_data(), headers,
            idempotent=request.method in IDEMPOTENT_METHODS)
        return Response(upstream.data, status=upstream.status, content_type=upstream.content_type)

    return app
