"""Opt-in OpenTelemetry tracing of the shop's requests and hops.

Off unless ``SEAMBENCH_TRACE_RATIO`` is set: ``tracer_from_env`` then returns None without
importing opentelemetry at all, and the web layer and the hops keep their untraced code
paths (one ``is None`` check each), so an untraced shop pays nothing for this module.

On, a process gets its own ``TracerProvider`` (service.name = the process, or gateway or
leaf server, service.instance.id = the worker's pid), sampling ``ParentBased(TraceIdRatio
Based(ratio))``: a request with no ``traceparent`` starts a trace with probability ``ratio``,
one with a ``traceparent`` follows its caller's decision, so a trace is whole or absent.
Spans are batched (``BatchSpanProcessor``) to a file of OTLP JSON lines in
``SEAMBENCH_TRACE_DIR`` (``OtlpJsonFile``, read back by ``read_spans``) and, when
``SEAMBENCH_OTLP_URL`` is set, to that OTLP/HTTP endpoint too.

No global tracer provider is set: each app holds its own tracer, so tests may build several
apps (several services) in one interpreter. ``shutdown_all`` flushes every provider made in
this process; it also runs at exit (gunicorn workers exit through ``sys.exit``).

Spans made (the wiring is shop/web.py and shop/hops.py):
- SERVER "<METHOD> <route rule>" per request, its parent the incoming ``traceparent``;
- CLIENT "hop <callee>" per ``HopClient.send``, which sends the ``traceparent`` on;
- INTERNAL "parse" / "encode" around the JSON of a request or response body, only under a
  span that records (sampled in).
"""
from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # opentelemetry is imported only once tracing is on
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

RATIO_ENV = "SEAMBENCH_TRACE_RATIO"  # float in (0, 1]; unset or empty: no tracing
DIR_ENV = "SEAMBENCH_TRACE_DIR"  # a directory: spans-<service>-<pid>.jsonl files, OTLP JSON
OTLP_URL_ENV = "SEAMBENCH_OTLP_URL"  # optional OTLP/HTTP traces endpoint, e.g. .../v1/traces
INSTRUMENTATION = "seambench"  # the instrumentation scope of every span
TRACER_KEY = "seambench.tracer"  # in the otel Context of a request: its app's tracer
SPAN_FILE_GLOB = "spans-*.jsonl"

# OTLP's Span.SpanKind numbers (OTLP JSON writes enums as integers).
KIND_NAMES = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
              5: "consumer"}



@dataclass(frozen=True)
class TraceExport:
    """How a launcher asks a server to trace: ``ratio`` of new traces sampled, spans to
    ``directory`` (OTLP JSON) and, if set, to the OTLP/HTTP endpoint ``otlp_url``."""

    ratio: float
    directory: str
    otlp_url: str | None = None

    def env(self) -> dict[str, str]:
        """The environment a server is started with to trace so."""
        return {RATIO_ENV: repr(self.ratio), DIR_ENV: self.directory,
                **({OTLP_URL_ENV: self.otlp_url} if self.otlp_url else {})}


_providers: list[TracerProvider] = []  # every provider this process made, for shutdown_all
_registry_lock = threading.Lock()
_atexit_registered = False
# One lock for every OtlpJsonFile in the process: two providers of one service (tests) share
# a file, and a long line may take several write() calls.
_write_lock = threading.Lock()


def trace_ratio_from_env() -> float | None:
    """``SEAMBENCH_TRACE_RATIO`` as a float in (0, 1], or None when unset or empty.
    Raises ValueError (one line, naming the variable) for anything else."""
    raw = os.environ.get(RATIO_ENV, "").strip()
    if not raw:
        return None
    try:
        ratio = float(raw)
    except ValueError:
        ratio = float("nan")
    if not 0 < ratio <= 1:  # NaN fails this too
        raise ValueError(f"{RATIO_ENV} must be a number in (0, 1], not {raw!r}")
    return ratio


def tracer_from_env(service: str) -> Tracer | None:
    """A tracer for process ``service`` when ``SEAMBENCH_TRACE_RATIO`` is set, else None
    (and opentelemetry stays unimported). Each call makes a new provider, so call it once
    per process (an app factory: in each gunicorn worker, after the fork); it is flushed by
    ``shutdown_all``, at exit at the latest. Raises ValueError naming the variable for a
    bad ratio, a missing ``SEAMBENCH_TRACE_DIR`` or an OTLP URL that is not http(s)."""
    ratio = trace_ratio_from_env()
    if ratio is None:
        return None
    directory = os.environ.get(DIR_ENV, "").strip()
    if not directory:
        raise ValueError(f"{RATIO_ENV} is set but {DIR_ENV} is not: say where spans go")
    url = os.environ.get(OTLP_URL_ENV, "").strip() or None
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"{OTLP_URL_ENV} must be an http(s):// OTLP traces endpoint, not {url!r}")
    return make_provider(service, ratio, Path(directory), url).get_tracer(INSTRUMENTATION)


def make_provider(service: str, ratio: float, directory: Path,
                  otlp_url: str | None = None) -> TracerProvider:
    """A provider for ``service`` sampling ``ratio`` of new traces, exporting to an
    ``OtlpJsonFile`` in ``directory`` (made if missing) and to ``otlp_url`` if given.
    Registered for ``shutdown_all``; the global provider is left alone."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    directory.mkdir(parents=True, exist_ok=True)
    resource = Resource.create({"service.name": service,
                                "service.instance.id": str(os.getpid())})
    # shutdown_on_exit=False: shutdown_all does it once, for every provider.
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)), resource=resource,
                              shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(_otlp_json_file()(directory, service)))
    if otlp_url is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_url)))
    global _atexit_registered
    with _registry_lock:
        _providers.append(provider)
        if not _atexit_registered:
            atexit.register(shutdown_all)
            _atexit_registered = True
    return provider


def shutdown_all() -> None:
    """Flush and shut down every provider made in this process (their tracers then make
    no more spans). Safe to call more than once."""
    with _registry_lock:
        providers = list(_providers)
        _providers.clear()
    for provider in providers:
        provider.shutdown()


# --- spans of the web layer and the hops (called only where a tracer exists) ----------


def server_spans(inner: Callable, tracer: Tracer, process: str, route_key: str) -> Callable:
    """WSGI middleware: each request in a SERVER span, current while ``inner`` runs.

    Named "<METHOD> <path>" at first and "<METHOD> <rule>" once ``inner`` has put the
    matched Flask rule in ``environ[route_key]`` (shop/web.py does, on teardown); its parent
    is the ``traceparent``/``tracestate`` the request came with. The span ends when
    ``inner`` returns (the body is then produced, not yet sent) or raises."""
    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()

    def traced(environ: dict, start_response: Callable):
        method = environ.get("REQUEST_METHOD", "GET")
        # The two W3C headers only, as the propagator's own default getter reads a dict.
        carrier = {}
        if (parent := environ.get("HTTP_TRACEPARENT")) is not None:
            carrier["traceparent"] = parent
            if (state := environ.get("HTTP_TRACESTATE")) is not None:
                carrier["tracestate"] = state
        # Always a fresh context: without a traceparent the request starts a trace, even
        # when served in-process under another request's span (Flask's test client).
        parent_ctx = propagator.extract(carrier)
        path = environ.get("PATH_INFO", "/")
        span = tracer.start_span(f"{method} {path}", parent_ctx, SpanKind.SERVER,
                                 {"http.request.method": method, "url.path": path,
                                  "seambench.process": process}, start_time=time.time_ns())
        ctx = context.set_value(TRACER_KEY, tracer, trace.set_span_in_context(span, parent_ctx))
        token = context.attach(ctx)

        def capture(status: str, headers: list, exc_info=None):
            code = int(status[:3])
            span.set_attribute("http.response.status_code", code)
            if code >= 500:  # a 4xx is the client's doing: no error on a server span
                span.set_status(Status(StatusCode.ERROR))
            return start_response(status, headers, exc_info)

        try:
            return inner(environ, capture)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            rule = environ.get(route_key)
            if rule is not None:
                span.update_name(f"{method} {rule}")
                span.set_attribute("http.route", rule)
            context.detach(token)
            span.end()

    return traced


def internal_span(name: str,
                  tracer: Tracer | None = None) -> contextlib.AbstractContextManager[Any]:
    """An INTERNAL span ``name`` under the current span when that one records (else a
    no-op context manager): by ``tracer``, or the tracer of the request being served."""
    from opentelemetry import context, trace

    if not trace.get_current_span().is_recording():
        return contextlib.nullcontext()
    if tracer is None:
        tracer = context.get_value(TRACER_KEY)  # type: ignore[assignment]
        if tracer is None:
            return contextlib.nullcontext()
    return tracer.start_as_current_span(name)


def start_client_span(tracer: Tracer, callee: str, method: str, target: str,
                      headers: dict[str, str]) -> tuple[Span, dict[str, str]]:
    """A CLIENT span "hop <callee>" (child of the current span) for a request to
    ``target`` (path and query), and a copy of ``headers`` carrying its traceparent."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    span = tracer.start_span(f"hop {callee}", kind=SpanKind.CLIENT,
                             attributes={"seambench.callee": callee,
                                         "http.request.method": method,
                                         "url.path": target.partition("?")[0]})
    sent = dict(headers)  # the caller's dict is shared (HopClient._headers): never written
    # Injected even when the span is not sampled: the callee then samples its span out too.
    TraceContextTextMapPropagator().inject(sent, trace.set_span_in_context(span))
    return span, sent


def end_client_span(span: Span, status: int | None, error: BaseException | None = None) -> None:
    """End a span of ``start_client_span``: with the response's ``status``, or, when none
    came, the ``error`` raised (Unavailable) as its error status."""
    from opentelemetry.trace import Status, StatusCode

    if status is not None:
        span.set_attribute("http.response.status_code", status)
        if status >= 400:  # a client span's error: the call did not succeed (semconv)
            span.set_status(Status(StatusCode.ERROR))
    elif error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, str(error)))
    span.end()


# --- the file exporter and its reader -------------------------------------------------


@functools.cache
def _otlp_json_file() -> type[SpanExporter]:
    """``OtlpJsonFile``, defined on first use: its base class is opentelemetry's."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class OtlpJsonFile(SpanExporter):
        """Appends one line per ``export`` to ``DIRECTORY/spans-<service>-<pid>.jsonl``:
        the OTLP JSON of an ExportTraceServiceRequest (resourceSpans / scopeSpans / spans,
        ids as lowercase hex, enums as integers, times as ns since the epoch in strings).
        Thread-safe; each line is flushed as it is written. The pid is the exporting
        process's at construction (a provider is made after gunicorn's fork)."""

        def __init__(self, directory: Path | str, service: str) -> None:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", service)
            self.path = Path(directory) / f"spans-{safe}-{os.getpid()}.jsonl"
            self._file: Any = None
            self._closed = False

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            if self._closed:
                return SpanExportResult.FAILURE
            message = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
            line = json.dumps(hex_ids(message), separators=(",", ":")) + "\n"
            try:
                with _write_lock:
                    if self._file is None:
                        self._file = open(self.path, "a", encoding="utf-8")
                    self._file.write(line)
                    self._file.flush()
            except OSError as exc:
                log.warning("cannot write spans to %s: %s", self.path, exc)
                return SpanExportResult.FAILURE
            return SpanExportResult.SUCCESS

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True  # every export is flushed as it is written

        def shutdown(self) -> None:
            with _write_lock:
                self._closed = True
                if self._file is not None:
                    self._file.close()
                    self._file = None

    return OtlpJsonFile


def __getattr__(name: str) -> Any:
    """``shop.tracing.OtlpJsonFile`` imports opentelemetry only when first asked for."""
    if name == "OtlpJsonFile":
        return _otlp_json_file()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def hex_ids(request: dict[str, Any]) -> dict[str, Any]:
    """An ExportTraceServiceRequest from ``MessageToDict`` (which writes bytes as base64)
    with its spans' and links' ids in lowercase hex, as OTLP JSON requires; in place."""
    for resource_spans in request.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for item in (span, *span.get("links", ())):
                    for key in ID_FIELDS:
                        if item.get(key):
                            item[key] = base64.b64decode(item[key]).hex()
    return request


def read_spans(directory: Path | str) -> list[dict[str, Any]]:
    """Every span in the ``spans-*.jsonl`` files of ``directory``, flattened, file by file
    in name order: dicts of ``trace_id`` (32 hex digits), ``span_id`` (16),
    ``parent_span_id`` (16, or None at a root), ``name``, ``kind`` ("server", "client",
    "internal", ...), ``start_ns`` and ``end_ns`` (int ns since the epoch), ``service``
    (the resource's service.name) and ``attributes`` (a plain dict). A line that is not
    JSON (a process killed while writing) is skipped."""
    spans: list[dict[str, Any]] = []
    for path in sorted(Path(directory).glob(SPAN_FILE_GLOB)):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                request = json.loads(line)
            except ValueError:
                continue
            spans.extend(_flatten(request))
    return spans


def _flatten(request: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for resource_spans in request.get("resourceSpans", ()):
        resource = attribute_dict(resource_spans.get("resource", {}).get("attributes", ()))
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                yield {"trace_id": span["traceId"], "span_id": span["spanId"],
                       "parent_span_id": span.get("parentSpanId") or None,
                       "name": span.get("name", ""),
                       "kind": KIND_NAMES.get(span.get("kind", 0), "unspecified"),
                       "start_ns": int(span.get("startTimeUnixNano", 0)),
                       "end_ns": int(span.get("endTimeUnixNano", 0)),
                       "service": resource.get("service.name"),
                       "attributes": attribute_dict(span.get("attributes", ()))}


def attribute_dict(pairs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """OTLP JSON KeyValues as a plain dict (intValue, a string in JSON, as an int)."""
    return {pair["key"]: _any_value(pair.get("value", {})) for pair in pairs}


def _any_value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in value["arrayValue"].get("values", ())]
    if "kvlistValue" in value:
        return attribute_dict(value["kvlistValue"].get("values", ()))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None
