"""Chain over HTTP: the public ``GET /chain?k=`` and each hosted link's internal endpoint."""
from __future__ import annotations

from flask import Blueprint, Response

from shop.auth.api import Auth
from shop.chain.api import CHAIN_ORDER, Link
from shop.errors import NotFound
from shop.web import caller, field, int_arg, json_body, json_response, require_service_credential


def blueprint(links: dict[str, Link], auth: Auth) -> Blueprint:
    """``links``: the links of the components this process hosts. ``/chain`` is served by
    the process hosting the chain's first component (the gateway routes it there), which
    hosts auth: its bearer token is checked there as a function call in every placement,
    so the check costs each the same and adds no hop to the chain being priced."""
    bp = Blueprint("chain", __name__)

    @bp.post("/internal/chain/<component>")
    def forward_internal(component: str) -> Response:
        if component not in links:
            raise NotFound(f"no chain link {component!r} in this process")
        require_service_credential()
        remaining = field(json_body(), "remaining", int)
        return json_response({"path": links[component].forward(remaining)})

    if CHAIN_ORDER[0] in links:
        first = links[CHAIN_ORDER[0]]

        @bp.get("/chain")
        def chain_public() -> Response:
            caller(auth)
            k = int_arg("k")
            return json_response({"path": first.forward(k), "hops": k})

    return bp
