"""The one HTTP hop every client stub uses: the thing a seam adds, so it is kept lean.

- A pool of keep-alive ``http.client`` connections per destination, shared by all of a
  gunicorn worker's threads: a connection is checked out by one thread at a time, most
  recently used first, and one the server has visibly closed (readable while idle) is
  discarded before use.
- Explicit connect and read timeouts; no answer is ``Unavailable`` (503).
- A reused connection the server closed just as we sent on it (the keep-alive race) fails
  with a reset or a disconnect and no response. An *idempotent* call is then resent at once,
  on a brand-new connection: never on another pooled one, which may be just as stale.
- When the dependency fails (shop/resilience.py), per edge (``HopSettings``, set by a
  topology's ``[edge."CALLER->CALLEE"]`` tables over ``EDGE_DEFAULTS``):
  - a *bulkhead* bounds the calls in flight to it from this process, so a slow dependency
    holds only that many of a worker's threads;
  - a *circuit breaker* refuses calls for ``breaker_reset_s`` after ``breaker_failures``
    consecutive calls got no answer, then lets one trial call through;
  - an idempotent call that failed *before the dependency could act* (connection refused
    or dropped before a response) is retried up to ``retries`` times with exponential
    backoff and full jitter (tenacity), within a retry budget (``retry_share`` of calls).
    Never a timeout (that would multiply a slow dependency's latency), never a call the
    breaker or the bulkhead refused, never a non-idempotent call (the server may have
    acted on it).
  A refused call fails at once with ``Unavailable`` carrying ``retry_after_s`` (the
  gateway's and the services' 503s then say ``Retry-After``).
- JSON errors are mapped back to the domain error the remote side raised.

Why not urllib3: it costs more per call than a bare http.client connection, and its retry
may pick another stale pooled connection when threads interleave. The hop is what is being
measured: tenacity is only entered after a first failure (figures: docs/methodology.md).
"""
from __future__ import annotations

import http.client
import json
import logging
import select
import socket
import threading
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from tenacity import RetryCallState, Retrying, stop_after_attempt, wait_random_exponential

from shop import tracing
from shop.address import address_of
from shop.errors import DomainError, RemoteError, Unavailable
from shop.resilience import Bulkhead, CircuitBreaker, Refusal, RetryBudget

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

SERVICE_HEADER = "X-Seambench-Service"
# A pooled connection's socket was closed under us: safe to resend an idempotent call.
STALE_CONNECTION_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError,
                           BrokenPipeError, ConnectionAbortedError)

HopObserver = Callable[[float, int | None], None]
"""Told of each ``send``: how long it took in seconds (retries included) and the
response status, or None when no answer came."""

ResilienceObserver = Callable[[str], None]
"""Told of each resilience event of a hop: "retry", "budget_spent", "refused_circuit",
"refused_bulkhead", "breaker_open", "breaker_half_open", "breaker_closed"."""


@dataclass(frozen=True)
class HopSettings:
    """How the hops of one edge behave. Times in seconds unless the name says ms."""

    connect_timeout_s: float = 0.5
    read_timeout_s: float = 2.0  # a call between services; the gateway's are derived (placement.py)
    pool_size: int = 32  # idle connections kept per destination
    max_idle_s: float = 20.0  # below the servers' keep-alive (30 s), so they never close first
    added_latency_ms: float = 0.0  # a fault hook: every hop waits this long before it sends
    retries: int = 2  # extra attempts of an idempotent call that was never acted on
    backoff_ms: float = 25.0  # full jitter: a retry waits uniform(0, min(cap, backoff * 2^n))
    backoff_cap_ms: float = 250.0
    retry_share: float = 0.2  # the retry budget: retries per call, besides 10 a second
    breaker_failures: int = 5  # consecutive calls with no answer that open the breaker; 0: none
    breaker_reset_s: float = 1.0  # how long it stays open before a trial call
    # A dependency may hold this share of the caller's threads per worker (0: no bound); a
    # call finding them all taken waits up to bulkhead_wait_ms for one, unless the oldest
    # call in flight has taken bulkhead_stall_ms: then it is refused at once (resilience.py).
    bulkhead_share: float = 0.75
    bulkhead_wait_ms: float = 250.0
    bulkhead_stall_ms: float = 250.0


# What a topology's [edge] table may set, with the type of each (the fault hook is the harness's).
EDGE_FIELDS: dict[str, type] = {f.name: (int if f.type in ("int", int) else float)
                                for f in fields(HopSettings) if f.name != "added_latency_ms"}
ANY = "*"
# Built in, under a topology's own: the scatter bounds and hedges its leaf calls itself.
# (The gateway's read timeouts are derived from the topology: Deployment.hop_settings.)
EDGE_DEFAULTS: dict[str, dict[str, float]] = {
    "*->leaf": {"retries": 0, "breaker_failures": 0, "bulkhead_share": 0.0,
                "read_timeout_s": 10.0},
}


def _edge_keys(caller: str, callee: str) -> tuple[str, ...]:
    """The [edge] tables that apply to a hop, least specific first."""
    return (f"{ANY}->{ANY}", f"{caller}->{ANY}", f"{ANY}->{callee}", f"{caller}->{callee}")


def edge_sets(edges: Mapping[str, Mapping[str, float]], caller: str, callee: str,
              field_name: str) -> bool:
    """Whether ``edges`` set ``field_name`` for the hop from ``caller`` to ``callee``."""
    return any(field_name in edges.get(key, {}) for key in _edge_keys(caller, callee))


def edge_settings(base: HopSettings, edges: Mapping[str, Mapping[str, float]], caller: str,
                  callee: str) -> HopSettings:
    """``base`` with what ``EDGE_DEFAULTS`` and then ``edges`` set for the hop from
    ``caller`` to ``callee``; within each, "CALLER->*" then "*->CALLEE" then
    "CALLER->CALLEE", so the most specific wins field by field."""
    changes: dict[str, float] = {}
    for table in (EDGE_DEFAULTS, edges):
        for key in _edge_keys(caller, callee):
            changes.update(table.get(key, {}))
    return replace(base, **{k: EDGE_FIELDS[k](v) for k, v in changes.items()}) if changes else base


@dataclass(frozen=True)
class HopResponse:
    status: int
    content_type: str
    data: bytes
    retry_after: str | None = None  # the response's Retry-After header, passed on by the gateway
    allow: str | None = None  # its Allow header (a 405's), passed on too


class ConnectionPool:
    """Idle keep-alive connections to one host:port, most recently used first."""

    def __init__(self, host: str, port: int, settings: HopSettings) -> None:
        self.host, self.port = host, port
        self._settings = settings
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()

    def new(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port,
                                          timeout=self._settings.connect_timeout_s)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(self._settings.read_timeout_s)
        return conn

    def acquire(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was reused from the pool."""
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, since = self._idle.pop()
            if now - since < self._settings.max_idle_s and not _readable(conn):
                return conn, True
            conn.close()
        return self.new(), False

    def release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._settings.pool_size:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


def _readable(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable has been closed (or is out of step)."""
    if conn.sock is None:
        return True
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(0))


class HopClient:
    """JSON-over-HTTP calls to one destination process. ``threads``: the caller's threads
    per worker, which the bulkhead's share is of."""

    def __init__(self, base_url: str, credential: str, settings: HopSettings = HopSettings(),
                 name: str = "dependency", observer: HopObserver | None = None,
                 threads: int = 8) -> None:
        try:
            host, port = address_of(base_url)
        except ValueError:
            raise ValueError(f"hop destination must be http://HOST:PORT, not {base_url!r}") from None
        self.base_url = base_url
        self.name = name  # said in errors instead of the internal address
        self.observer = observer  # set by the wiring before traffic, if it measures hops
        self.on_event: ResilienceObserver | None = None  # likewise, for resilience events
        # Likewise, when the process traces (shop/tracing.py): a CLIENT span per send.
        self.tracer: Tracer | None = None
        self.settings = settings
        self._added_latency_s = settings.added_latency_ms / 1000
        self._pool = ConnectionPool(host, port, settings)
        self._headers = {"Content-Type": "application/json", SERVICE_HEADER: credential}
        self.breaker = (CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s,
                                       lambda _, to: self._event(f"breaker_{to}"))
                        if settings.breaker_failures else None)
        self.bulkhead = (Bulkhead(max(1, math.ceil(settings.bulkhead_share * threads)),
                                  settings.bulkhead_wait_ms / 1000,
                                  settings.bulkhead_stall_ms / 1000)
                         if settings.bulkhead_share > 0 else None)
        self.budget = RetryBudget(settings.retry_share) if settings.retries else None

    def call(self, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """POST ``body`` to ``path``; the JSON response, or the remote side's DomainError."""
        if self.tracer is not None:
            return self._traced_call(path, body, idempotent)
        payload = json.dumps(body, separators=(",", ":")).encode()
        response = self.send("POST", path, payload, self._headers, idempotent=idempotent)
        return self._answer(path, response, json.loads)

    def _answer(self, path: str, response: HopResponse,
                parse: Callable[[bytes], Any]) -> dict[str, Any]:
        """``response``'s JSON by ``parse``, or the remote side's DomainError."""
        try:
            data = parse(response.data)
        except ValueError:
            log.warning("hop %s%s: HTTP %s with a body that is not JSON", self.base_url, path,
                        response.status)
            raise RemoteError(f"{self.name} answered HTTP {response.status}, not JSON") from None
        if response.status >= 400:
            raise DomainError.from_json(response.status, data)
        return data

    def _traced_call(self, path: str, body: dict[str, Any], idempotent: bool) -> dict[str, Any]:
        """``call`` with INTERNAL "encode" and "parse" spans around the JSON, when the
        current span records (siblings of the send's CLIENT span)."""
        with tracing.internal_span("encode", self.tracer):
            payload = json.dumps(body, separators=(",", ":")).encode()
        response = self.send("POST", path, payload, self._headers, idempotent=idempotent)

        def parse(data: bytes) -> Any:
            with tracing.internal_span("parse", self.tracer):
                return json.loads(data)

        return self._answer(path, response, parse)

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str], *,
             idempotent: bool) -> HopResponse:
        """One request, its body read in full. Raises Unavailable when no answer came."""
        if self.tracer is not None:
            return self._traced_send(self.tracer, method, path, body, headers, idempotent)
        observer = self.observer
        if observer is None:
            return self._send(method, path, body, headers, idempotent)
        started = time.perf_counter()
        try:
            response = self._send(method, path, body, headers, idempotent)
        except Unavailable:
            observer(time.perf_counter() - started, None)
            raise
        observer(time.perf_counter() - started, response.status)
        return response

    def _traced_send(self, tracer: Tracer, method: str, path: str, body: bytes | None,
                     headers: dict[str, str], idempotent: bool) -> HopResponse:
        """``send`` in a CLIENT span (retries included), its traceparent sent along in a
        copy of ``headers``; the observer is told as by ``send``."""
        span, headers = tracing.start_client_span(tracer, self.name, method, path, headers)
        observer = self.observer
        started = time.perf_counter()
        try:
            response = self._send(method, path, body, headers, idempotent)
        except BaseException as exc:
            if observer is not None and isinstance(exc, Unavailable):
                observer(time.perf_counter() - started, None)
            tracing.end_client_span(span, None, exc)
            raise
        if observer is not None:
            observer(time.perf_counter() - started, response.status)
        tracing.end_client_span(span, response.status)
        return response

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
              idempotent: bool) -> HopResponse:
        if self.budget is not None:
            self.budget.deposit()
        try:
            return self._attempt(method, path, body, headers, idempotent)
        except Unavailable as exc:
            if not (idempotent and self.budget is not None and exc.retryable):
                raise
            first = exc
        replay = [first]

        def attempt() -> HopResponse:
            # The attempt that already failed is replayed, so tenacity's stop, wait and
            # retry decide from it: the fast path never enters tenacity.
            if replay:
                raise replay.pop()
            return self._attempt(method, path, body, headers, idempotent)

        settings = self.settings
        return Retrying(stop=stop_after_attempt(1 + settings.retries),
                        wait=wait_random_exponential(multiplier=settings.backoff_ms / 1000,
                                                     max=settings.backoff_cap_ms / 1000),
                        retry=self._may_retry, reraise=True)(attempt)

    def _may_retry(self, state: RetryCallState) -> bool:
        """Whether to retry after the attempt ``state`` describes (tenacity asks this before
        its stop rule: the last attempt must not spend the budget)."""
        exc = state.outcome.exception() if state.outcome is not None else None
        if not (isinstance(exc, Unavailable) and exc.retryable):
            return False
        if state.attempt_number > self.settings.retries:
            return False
        if self.budget is None or not self.budget.withdraw():
            self._event("budget_spent")
            return False
        self._event("retry")
        return True

    def _attempt(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
                 idempotent: bool) -> HopResponse:
        """One call through the bulkhead and the breaker."""
        bulkhead, breaker = self.bulkhead, self.breaker
        # The breaker first: while it is open a call is refused without waiting for a place.
        if breaker is not None and (refusal := breaker.admit()) is not None:
            raise self._refused(path, refusal, "refused_circuit")
        if bulkhead is not None and (refusal := bulkhead.enter()) is not None:
            if breaker is not None:
                breaker.cancel()  # an admitted trial call that was never made
            raise self._refused(path, refusal, "refused_bulkhead")
        try:
            try:
                response = self._exchange_once(method, path, body, headers, idempotent)
            except Unavailable:
                if breaker is not None:
                    breaker.record(False)
                raise
            if breaker is not None:
                breaker.record(True)
            return response
        finally:
            if bulkhead is not None:
                bulkhead.leave()

    def _exchange_once(self, method: str, path: str, body: bytes | None,
                       headers: dict[str, str], idempotent: bool) -> HopResponse:
        if self._added_latency_s:
            time.sleep(self._added_latency_s)
        try:
            conn, reused = self._pool.acquire()
        except OSError as exc:
            raise self._unavailable(path, "cannot connect", exc, retryable=True) from exc
        try:
            return self._exchange(conn, method, path, body, headers)
        except STALE_CONNECTION_ERRORS as exc:
            if not (reused and idempotent):
                # no response came: a call that is not idempotent may have been acted on
                raise self._unavailable(path, "connection dropped", exc,
                                        retryable=idempotent) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._unavailable(path, "no answer", exc) from exc
        try:  # the keep-alive race: resent at once, on a connection nobody has used
            return self._exchange(self._pool.new(), method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unavailable(path, "no answer after a resend", exc,
                                    retryable=isinstance(exc, ConnectionRefusedError)) from exc

    def _unavailable(self, path: str, what: str, exc: BaseException,
                     retryable: bool = False) -> Unavailable:
        """The full story goes to the log; the caller (maybe a public client) gets the gist."""
        log.warning("hop %s%s: %s: %r", self.base_url, path, what, exc)
        return Unavailable(f"{self.name} is unavailable: {what} ({type(exc).__name__})",
                           retry_after_s=1.0, retryable=retryable,
                           never_sent=isinstance(exc, ConnectionRefusedError))

    def _refused(self, path: str, refusal: Refusal, event: str) -> Unavailable:
        self._event(event)
        return Unavailable(f"{self.name} is unavailable: {refusal.reason}, not called",
                           retry_after_s=refusal.retry_after_s, never_sent=True)

    def _event(self, event: str) -> None:
        if event.startswith("breaker_"):
            log.warning("hop to %s: circuit breaker %s", self.name, event.removeprefix("breaker_"))
        if self.on_event is not None:
            self.on_event(event)

    def _exchange(self, conn: http.client.HTTPConnection, method: str, path: str,
                  body: bytes | None, headers: dict[str, str]) -> HopResponse:
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._pool.release(conn)
        return HopResponse(response.status,
                           response.getheader("Content-Type", "application/json"), data,
                           response.getheader("Retry-After"), response.getheader("Allow"))

    def close(self) -> None:
        self._pool.close()
