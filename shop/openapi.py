"""The public API as an OpenAPI 3.0 document, served at ``GET /openapi.json`` by every
placement's public address (and every process).

It is the contract of the public API: each operation's success body, and every
error as ``{"error", "detail"}`` with the statuses the shop answers (a 503 from a dependency
that is down is documented on every operation that calls one). Limits are the domain's own
constants, so the document cannot drift from the validation. tests/contract/test_openapi.py
fuzzes every placement against it with schemathesis.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shop.auth.service import PASSWORD_LENGTH, USERNAME
from shop.billing.service import MAX_ITEMS, MAX_QTY, MAX_TOPUP_CENTS, ORDER_ID
from shop.chain.api import MAX_HOPS
from shop.events import EVENT_ID
from shop.search.hedging import MAX_HEDGE_SHARE
from shop.search.leaves import MAX_HEDGE_MS, MAX_SEED
from shop.search.service import MAX_LIMIT, TERM

OPENAPI_PATH = "/openapi.json"

ERROR = {"$ref": "#/components/schemas/Error"}
HIT = {"type": "object", "required": ["sku", "name", "price_cents", "score"],
       "properties": {"sku": {"type": "string"}, "name": {"type": "string"},
                      "price_cents": {"type": "integer"}, "score": {"type": "number"}}}
BALANCE = {"type": "object", "required": ["balance_cents"],
           "properties": {"balance_cents": {"type": "integer", "minimum": 0}}}
LINE = {"type": "object", "required": ["sku", "qty"],
        "properties": {"sku": {"type": "string", "minLength": 1, "maxLength": 64,
                               "example": "SKU-000001"},
                       "qty": {"type": "integer", "minimum": 1, "maximum": MAX_QTY}}}
BEARER = [{"bearer": []}]
KEY_PATTERN = "^[\\x21-\\x7e]{1,128}$"

STATUS_TEXT = {400: "malformed request", 401: "no valid bearer token", 402: "not enough money",
               404: "not found", 409: "conflict", 413: "body too large",
               414: "request line over the server's limit (4094 bytes)",
               422: "a value the domain refuses",
               429: "too many failed logins in a row for this username: wait Retry-After "
                    "seconds",
               503: "a dependency is unavailable (for a write without an Idempotency-Key: the "
                    "outcome is unknown, not failed)"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(summary: str, success: int, body: dict[str, Any], errors: tuple[int, ...], *,
               secured: bool = True, request: dict[str, Any] | None = None,
               parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    # any request line may be too long for the server (gunicorn's 4094 bytes)
    errors = tuple(sorted({*errors, 414}))
    op: dict[str, Any] = {"summary": summary, "responses": {
        str(success): _json(body, "success"),
        **{str(code): _json(ERROR, STATUS_TEXT[code]) for code in errors}}}
    if secured:
        op["security"] = BEARER
    if request is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": request}}}
    if parameters:
        op["parameters"] = parameters
    return op


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _key_header(required: bool) -> dict[str, Any]:
    return {"name": "Idempotency-Key", "in": "header", "required": required,
            "schema": {"type": "string", "pattern": KEY_PATTERN}}


@dataclass(frozen=True)
class ApiShape:
    """What of the public API depends on the deployment: its shards (``n`` of a scatter is
    1..shards) and the latency injections it defines (``delay``'s names)."""

    shards: int = 32
    delays: tuple[str, ...] = ()


def openapi_document(shape: ApiShape = ApiShape()) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of the public API of a deployment of ``shape``: every
    constraint the server enforces on a request is stated, so a request the document allows
    is one the shop accepts (or refuses for the state it meets: 402, 404, 409, 429)."""
    credentials = {"type": "object", "required": ["username", "password"],
                   "properties": {"username": {"type": "string"},
                                  "password": {"type": "string"}}}
    new_user = {"type": "object", "required": ["username", "password"],
                "properties": {"username": {"type": "string", "pattern": f"^{USERNAME.pattern}$"},
                               "password": {"type": "string", "minLength": PASSWORD_LENGTH[0],
                                            "maxLength": PASSWORD_LENGTH[1]}}}
    search_params = [_query("q", {"type": "string", "pattern": TERM.pattern}, required=True),
                     _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})]
    injections = ([_query("delay", {"type": "string", "enum": list(shape.delays)}),
                   _query("seed", {"type": "integer", "minimum": 0, "maximum": MAX_SEED})]
                  if shape.delays else
                  [_query("seed", {"type": "integer", "minimum": 0, "maximum": MAX_SEED})])
    document = {
        "openapi": "3.0.3",
        "info": {"title": "seambench shop", "version": "1",
                 "description": "One shop, the same API in every placement. Money in integer "
                                "cents; every error is {\"error\", \"detail\"}."},
        "paths": {
            "/auth/register": {"post": _operation(
                "Create a user", 201, {"type": "object", "required": ["user_id"],
                                       "properties": {"user_id": {"type": "string"}}},
                (400, 409, 413, 422, 503), secured=False, request=new_user)},
            "/auth/login": {"post": _operation(
                "A bearer token for a user", 200,
                {"type": "object", "required": ["token", "expires_at"],
                 "properties": {"token": {"type": "string"}, "expires_at": {"type": "number"}}},
                (400, 401, 413, 422, 429, 503), secured=False, request=credentials)},
            "/chain": {"get": _operation(
                f"A pass-through chain of k component calls (k 0-{MAX_HOPS}) from auth around "
                "the ring auth, billing, search, notify: what one call between components "
                "costs in this placement (the hops experiment's probe)", 200,
                {"type": "object", "required": ["path", "hops"],
                 "properties": {"path": {"type": "array", "items": {"type": "string"}},
                                "hops": {"type": "integer"}}},
                (400, 401, 414, 422, 503), parameters=[_query(
                    "k", {"type": "integer", "minimum": 0, "maximum": MAX_HOPS},
                    required=True)])},
            "/search": {"get": _operation(
                f"Full-text search of the catalog (limit 1-{MAX_LIMIT}, default 10)", 200,
                {"type": "object", "required": ["results"],
                 "properties": {"results": {"type": "array", "items": HIT}}},
                (400, 401, 422, 503), parameters=search_params)},
            "/search/scatter": {"get": _operation(
                "The best hits of shards 0..n-1, asked at once", 200,
                {"type": "object", "required": ["results", "shards"],
                 "properties": {"results": {"type": "array", "items": HIT},
                                "shards": {"type": "integer"}, "of": {"type": "integer"},
                                "backups": {"type": "integer"},
                                "leaf_us": {"type": "array", "items": {"type": "integer"}},
                                "wait_us": {"type": "array", "items": {"type": "integer"}},
                                "hedge_late_us": {"type": "integer"},
                                "hedge_ms": {"type": "number"}}},
                (400, 401, 422, 503), parameters=[
                    *search_params,
                    _query("n", {"type": "integer", "minimum": 1, "maximum": shape.shards}),
                    _query("hedge_ms", {"type": "number", "exclusiveMinimum": True,
                                        "minimum": 0, "maximum": MAX_HEDGE_MS}),
                    _query("hedge_share", {"type": "number", "exclusiveMinimum": True,
                                           "minimum": 0, "maximum": MAX_HEDGE_SHARE}),
                    *injections])},
            "/billing/topup": {"post": _operation(
                f"Add money (1 to {MAX_TOPUP_CENTS} cents); with an Idempotency-Key, credited "
                f"once however often it is sent", 200, BALANCE, (400, 401, 413, 422, 503),
                request={"type": "object", "required": ["amount_cents"],
                         "properties": {"amount_cents": {"type": "integer", "minimum": 1,
                                                         "maximum": MAX_TOPUP_CENTS}}},
                parameters=[_key_header(required=False)])},
            "/billing/balance": {"get": _operation("The caller's balance", 200, BALANCE,
                                                   (401, 503))},
            "/billing/checkout": {"post": _operation(
                f"Buy 1-{MAX_ITEMS} lines; charged once per Idempotency-Key", 201,
                {"type": "object", "required": ["order_id", "total_cents", "balance_cents"],
                 "properties": {"order_id": {"type": "string"},
                                "total_cents": {"type": "integer"},
                                "balance_cents": {"type": "integer"}}},
                (400, 401, 402, 404, 413, 422, 503),
                request={"type": "object", "required": ["items"],
                         "properties": {"items": {"type": "array", "items": LINE,
                                                  "minItems": 1, "maxItems": MAX_ITEMS}}},
                parameters=[_key_header(required=True)])},
            "/billing/orders/{order_id}": {"get": _operation(
                "One of the caller's orders (404 for another user's)", 200,
                {"type": "object", "required": ["order_id", "items", "total_cents", "created_at"],
                 "properties": {"order_id": {"type": "string"},
                                "items": {"type": "array", "items": {
                                    "type": "object", "required": ["sku", "qty", "price_cents"],
                                    "properties": {"sku": {"type": "string"},
                                                   "qty": {"type": "integer"},
                                                   "price_cents": {"type": "integer"}}}},
                                "total_cents": {"type": "integer"},
                                "created_at": {"type": "number"}}},
                (401, 404, 503), parameters=[{"name": "order_id", "in": "path", "required": True,
                                              "schema": {"type": "string",
                                                         "pattern": f"^{ORDER_ID.pattern}$"}}])},
            "/notify/inbox": {"get": _operation(
                "A page of the caller's notifications: the newest 100, or with ?before=EVENT_ID "
                "the newest 100 older than that one (404: no such notification in this inbox); "
                "oldest of them first. next_before is the "
                "cursor of the next (older) page while pages are full, else null", 200,
                {"type": "object", "required": ["notifications", "next_before"],
                 "properties": {"notifications": {"type": "array", "items": {
                     "type": "object",
                     "required": ["event_id", "order_id", "text", "created_at"],
                     "properties": {"event_id": {"type": "string"},
                                    "order_id": {"type": "string"},
                                    "text": {"type": "string"},
                                    "created_at": {"type": "number"}}}},
                     "next_before": {"type": "string", "nullable": True}}},
                (400, 401, 404, 503), parameters=[_query(
                    "before", {"type": "string", "pattern": f"^{EVENT_ID.pattern}$"})])},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error", "detail"],
                                  "properties": {"error": {"type": "string"},
                                                 "detail": {"type": "string"}}}},
        },
    }
    link_operations(document["paths"])
    return document


def allowed_methods(document: dict[str, Any]) -> dict[str, str]:
    """Each path template of ``document`` -> its Allow header, as Flask writes it for a route
    of those methods (HEAD beside GET, OPTIONS always)."""
    allow = {}
    for path, item in document["paths"].items():
        methods = {m.upper() for m in item} | {"OPTIONS"} | ({"HEAD"} if "get" in item else set())
        allow[path] = ", ".join(sorted(methods))
    return allow


def path_regex(template: str) -> str:
    """A regex source matching the paths of an OpenAPI path template ({name}: one segment)."""
    return re.sub(r"\\\{[^}]+\\\}", "[^/?]+", re.escape(template))


def allow_for(document: dict[str, Any], path: str) -> str | None:
    """The Allow header of the public path ``path``; None when the document has no such path."""
    return next((allow for template, allow in allowed_methods(document).items()
                 if re.fullmatch(path_regex(template), path)), None)


# What one operation's answer lets a client do next, as OpenAPI links (schemathesis' stateful
# phase follows them): a registered user logs in; a checkout's order can be read back.
LINKS = {("/auth/register", "post", "201"): {"LogIn": {
             "operationId": "postAuthLogin",
             "requestBody": {"username": "$request.body#/username",
                             "password": "$request.body#/password"}}},
         ("/billing/checkout", "post", "201"): {"ReadTheOrder": {
             "operationId": "getBillingOrdersOrderId",
             "parameters": {"order_id": "$response.body#/order_id"}}}}


def link_operations(paths: dict[str, Any]) -> None:
    """Give every operation an operationId (method and path: ``getBillingOrdersOrderId``)
    and add ``LINKS`` to the responses they start from."""
    for path, item in paths.items():
        for method, op in item.items():
            words = re.findall(r"[A-Za-z0-9]+", path.replace("_", "/"))
            op["operationId"] = method + "".join(w[:1].upper() + w[1:] for w in words)
    for (path, method, status), links in LINKS.items():
        paths[path][method]["responses"][status]["links"] = links
