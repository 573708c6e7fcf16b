"""What every process's Flask app shares: JSON in and out, errors, credentials, health.

Logic never imports this module; routes use it to turn HTTP into interface calls.
"""
from __future__ import annotations

import functools
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from shop import tracing
from shop.auth.api import Auth, InvalidToken, Principal
from shop.errors import DomainError, Forbidden, InvalidRequest
from shop.hops import SERVICE_HEADER
from shop.openapi import OPENAPI_PATH, ApiShape, openapi_document
from shop.telemetry import Telemetry

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
STARTED_KEY = "seambench.started"  # in the WSGI environ: when the request reached Flask
ROUTE_KEY = "seambench.route"  # in the WSGI environ of a traced request: its Flask rule
T = TypeVar("T")
# Set once an app of this process is traced, never unset: until then the JSON helpers pay
# one check for tracing. (Per app it cannot be: the helpers do not know their app without
# a context lookup; under an untraced app's request no span records, so none is made.)
_tracing = False


def json_response(body: Any, status: int = 200) -> Response:
    if _tracing:
        with tracing.internal_span("encode"):
            text = json.dumps(body, separators=(",", ":"))
    else:
        text = json.dumps(body, separators=(",", ":"))
    return Response(text, status=status, mimetype="application/json")


def error_response(code: str, detail: str, status: int) -> Response:
    return json_response({"error": code, "detail": detail}, status)


def body_bytes() -> bytes:
    """The request's body. Raises RequestEntityTooLarge (413) for one over MAX_BODY_BYTES,
    whether it said its length or came chunked."""
    raw = request.get_data(cache=True)
    if request.content_length is None and len(raw) >= MAX_BODY_BYTES:
        # A chunked body is cut at the limit by werkzeug without a word: one more byte
        # says it was longer (a 400 for "not JSON" would be the wrong answer).
        if request.stream.read(1):
            raise RequestEntityTooLarge(f"the body is over {MAX_BODY_BYTES} bytes")
    return raw


def json_body() -> dict[str, Any]:
    """The request's JSON object. Raises InvalidRequest for anything else, and
    RequestEntityTooLarge (413) for a body over MAX_BODY_BYTES, chunked or not."""
    raw = body_bytes()
    try:
        if _tracing:
            with tracing.internal_span("parse"):
                body = json.loads(raw)
        else:
            body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def field(body: dict[str, Any], name: str, kind: type[T]) -> T:
    """``body[name]`` if present and of ``kind`` (a bool is not an int). Raises InvalidRequest."""
    if name not in body:
        raise InvalidRequest(f"missing field {name!r}")
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequest(f"field {name!r} must be of type {kind.__name__}")
    if isinstance(value, str) and not _encodable(value):
        raise InvalidRequest(f"field {name!r} is not valid Unicode (a lone surrogate)")
    return value


def number_field(body: dict[str, Any], name: str) -> float:
    """``body[name]`` as a float: a finite JSON number (int or float, not a bool; Python's
    JSON reader also takes NaN and Infinity, refused here). Raises InvalidRequest."""
    if name not in body:
        raise InvalidRequest(f"missing field {name!r}")
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise InvalidRequest(f"field {name!r} must be a finite number")
    return float(value)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _encodable(text: str) -> bool:
    """JSON may carry "\\ud800"; such a string cannot be hashed, stored or sent on."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def int_arg(name: str, default: int | None = None) -> int:
    """Query parameter ``name`` as an int; ``default`` when absent, or, with no default,
    InvalidRequest (400) like a value that is not an integer."""
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise InvalidRequest(f"missing query parameter {name!r}")
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"query parameter {name!r} must be an integer") from None


def float_arg(name: str) -> float:
    """Query parameter ``name`` as a finite float. Raises InvalidRequest (400) when it is
    missing, not a number, NaN or infinite."""
    raw = request.args.get(name)
    if raw is None:
        raise InvalidRequest(f"missing query parameter {name!r}")
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"query parameter {name!r} must be a number") from None
    if not math.isfinite(value):
        raise InvalidRequest(f"query parameter {name!r} must be a finite number")
    return value


def str_arg(name: str) -> str:
    value = request.args.get(name)
    if value is None:
        raise InvalidRequest(f"missing query parameter {name!r}")
    return value


def caller(auth: Auth) -> Principal:
    """The principal behind ``Authorization: Bearer <token>``. Raises InvalidToken (401)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("missing bearer token")
    return auth.verify(token.strip())


def require_service_credential() -> None:
    """Internal endpoints answer only callers that carry the deployment's service credential."""
    expected = current_app.config["SERVICE_CREDENTIAL"]
    given = request.headers.get(SERVICE_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("internal endpoint: service credential required")


class DrainUnreadBody:
    """WSGI middleware: after an error response, read what the app left of the request body.

    An error (401 before the body is parsed, 413 for a body over the limit) leaves the body
    unread. gunicorn drains at most 64 KiB of it and otherwise closes the socket after
    answering, without ``Connection: close`` (it drops hop-by-hop headers set by the app).
    Closing a socket with unread data sends a reset, which can reach the client before it
    reads the answer: it sees "connection reset", never the 413, and a client reusing the
    keep-alive connection fails too. Draining the rest of the body (Content-Length or
    chunked) up to ``limit`` bytes and ``limit_s`` seconds keeps the answer readable and
    the connection clean; a larger or slower body is left to the server to cut off.
    """

    def __init__(self, app: Callable, limit: int = 16 * MAX_BODY_BYTES,
                 limit_s: float = 5.0) -> None:
        self.app = app
        self.limit = limit
        self.limit_s = limit_s

    def __call__(self, environ: dict, start_response: Callable):
        failed = False

        def capture(status: str, headers: list, exc_info=None):
            nonlocal failed
            failed = status[:1] in "45"
            return start_response(status, headers, exc_info)

        result = self.app(environ, capture)
        if failed:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
            if (0 < length <= self.limit) or chunked:
                self._drain(environ["wsgi.input"])
        return result

    def _drain(self, stream: Any) -> None:
        deadline, read = time.monotonic() + self.limit_s, 0
        try:
            while read < self.limit and time.monotonic() < deadline:
                chunk = stream.read(64 * 1024)
                if not chunk:
                    return
                read += len(chunk)
        except (OSError, ValueError):  # the client went away, or sent a broken chunk
            return


def time_requests(app: Flask, telemetry: Telemetry, tracer: Tracer | None = None) -> None:
    """Tell ``telemetry`` of every answered request (errors included): its route rule, method,
    status and seconds from reaching the app (before routing) to its response. With a
    ``tracer``, each request is also a SERVER span of it (shop/tracing.py), opened before
    the clock starts and current while the app runs."""
    global _tracing
    inner = app.wsgi_app

    def start_clock(environ: dict, start_response: Callable):
        # Here, not in a before_request: no request-context lookup (~1 µs each in-process).
        environ[STARTED_KEY] = time.perf_counter()
        return inner(environ, start_response)

    app.wsgi_app = start_clock
    if tracer is not None:  # decided once here: an untraced app's requests never ask
        _tracing = True
        app.wsgi_app = tracing.server_spans(start_clock, tracer, app.name, ROUTE_KEY)

        @app.teardown_request
        def name_span(exc: BaseException | None) -> None:
            # On teardown, which runs after errors too; the span wrapper reads it from the
            # environ once the app has answered (the request context is gone by then).
            rule = request.url_rule
            if rule is not None:
                request.environ[ROUTE_KEY] = rule.rule

    @app.after_request
    def observe(response: Response) -> Response:
        req = request._get_current_object()  # one context lookup for the three reads below
        started = req.environ.get(STARTED_KEY)
        if started is not None:
            # The rule ("/billing/orders/<order_id>"), never the path: label values are a
            # bounded set, one per order id would grow without end.
            rule = req.url_rule
            telemetry.observe_request(rule.rule if rule is not None else None, req.method,
                                      response.status_code, time.perf_counter() - started)
        return response


RULE_VARIABLE = re.compile(r"<(?:[^:<>]*:)?([^<>]+)>")  # Flask's <order_id> is OpenAPI's {order_id}


@functools.lru_cache(maxsize=256)
def template_of(rule: str) -> str:
    """A Flask rule as an OpenAPI path template (once per rule: every request asks)."""
    return RULE_VARIABLE.sub(r"{\1}", rule)


def documented_query_names(document: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(path, METHOD) of each operation of an OpenAPI document -> its query parameters."""
    return {(path, method.upper()): {p["name"] for p in op.get("parameters", ())
                                     if p["in"] == "query"}
            for path, item in document["paths"].items() for method, op in item.items()}


def create_base_app(name: str, service_credential: str, telemetry: Telemetry,
                    down: Callable[[], list[str]] = list,
                    api: ApiShape = ApiShape(), tracer: Tracer | None = None) -> Flask:
    """A Flask app with JSON errors for everything, /healthz (alive), /readyz (alive and every
    dependency ``down`` does not name answering: 503 naming them otherwise), /metrics
    (what ``telemetry`` holds, in Prometheus' text format) and /openapi.json (the public API
    of a deployment of ``api``'s shape); every request is timed into it. Every request is
    also a span of ``tracer``; None: of ``tracing.tracer_from_env(name)``, itself None (no
    spans) unless SEAMBENCH_TRACE_RATIO is set. A process whose hops trace too passes the
    one tracer it gave them."""
    app = Flask(name)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.url_map.merge_slashes = False  # else "//" gets an HTML redirect, not a JSON 404
    app.config["SERVICE_CREDENTIAL"] = service_credential
    app.wsgi_app = DrainUnreadBody(app.wsgi_app)
    time_requests(app, telemetry, tracer if tracer is not None else tracing.tracer_from_env(name))

    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError) -> Response:
        response = json_response(exc.to_json(), exc.status)
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:  # whole seconds (RFC 9110), never 0: "not before"
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(code, exc.description or code, exc.code or 500)
        allow = dict(exc.get_headers()).get("Allow")
        if allow:  # a 405 says what the resource does allow (RFC 9110, 15.5.6)
            response.headers["Allow"] = allow
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("internal", "internal error", 500)

    @app.get("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok", "process": name})

    @app.get("/readyz")
    def readyz() -> Response:
        missing = down()
        if not missing:
            return json_response({"status": "ready", "process": name})
        return error_response("not_ready", f"not answering: {', '.join(missing)}", 503)

    document = openapi_document(api)  # built once per app, not at import

    @app.get(OPENAPI_PATH)
    def openapi() -> Response:
        return json_response(document)

    query_names = documented_query_names(document)

    @app.before_request
    def refuse_unknown_parameters() -> None:
        """A public operation takes the query parameters its document names, no others: a
        typo (``?limt=5``) is a 400 naming it, not a default applied in silence."""
        rule = request.url_rule
        allowed = query_names.get((template_of(rule.rule), request.method)) \
            if rule is not None else None
        if allowed is None:  # not a public operation (/healthz, internal routes, ...)
            return
        unknown = sorted(set(request.args) - allowed)
        if unknown:
            raise InvalidRequest(f"unknown query parameter {unknown[0]!r}; this operation "
                                 f"takes {', '.join(sorted(allowed)) or 'none'}")
        repeated = sorted(k for k in request.args if len(request.args.getlist(k)) > 1)
        if repeated:  # each parameter is one value: which of two would be meant?
            raise InvalidRequest(f"give {repeated[0]!r} at most once")

    @app.get("/metrics")
    def metrics_text() -> Response:
        return Response(telemetry.exposition(request.args.getlist("name[]")),
                        content_type=telemetry.content_type)

    return app
