"""A lean keep-alive HTTP/1.1 client for the open-loop generator, reporting through Locust's events.

Locust's ``FastHttpSession`` does per request what the scenarios never need (header
dictionaries merged and validated, a cookie jar, compression, redirects, charset detection),
and every microsecond of it lands in a latency measured from the intended send time and
limits how fast one generator process can go (its cost: docs/methodology.md). This client does
only what the scenarios need: plain HTTP/1.1 on pooled keep-alive
connections (TCP_NODELAY, at most ``connections`` of them), a request head written in one
send together with its body (JSON or bytes), a response read by ``Content-Length``, chunked
transfer or connection close, and one ``request`` event per request with the fields Locust's
own clients fire (``request_type``, ``name``, ``response_time`` in ms, ``response_length``,
``response``, ``context``, ``exception``, ``start_time``, ``url``), so Locust's statistics
and any other listener keep working. A status of 400 or more is a failure (its
``exception`` is an ``HTTPStatusError``); a network error gives a response with status 0.

Stale keep-alive connections (closed by the server while idle) are found before they are
used (a non-blocking peek, once idle for 0.25 s) and replaced; a reused connection that
still fails before any byte of a response arrives is retried once on a fresh one, but only
for idempotent methods
(RFC 9112 section 9.2.2): a POST that may have reached the server is reported, never resent.
``connection_timeout`` bounds a connect; ``network_timeout`` bounds a request's send and
response together (a watchdog shuts down connections past it: the request fails with a
``TimeoutError``).

No TLS, no proxies, no cookies, no redirects, no compression: loopback measurement only.
Under Locust the process is monkey-patched, so its sockets and its connection limit are
gevent's; unpatched (tests), the same code runs on plain threads.
"""
from __future__ import annotations

import json as jsonlib
import socket
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
MAX_HEAD_BYTES = 65536
RECV_BYTES = 65536
NO_BODY_STATUSES = frozenset({204, 304})
URL_SAFE = "!#$%&'()*+,/:;=?@[]~"  # left as they are in a request target (requests' requote_uri)
PEEK_AFTER_IDLE_S = 0.25  # check a pooled connection for a close by the server after this


class RequestEvent(Protocol):
    def fire(self, **kwargs: Any) -> None: ...


class HTTPStatusError(Exception):
    """The response's status was 400 or more."""


class ProtocolError(OSError):
    """The server's bytes are not an HTTP/1.x response we can read."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the response was complete."""

    def __init__(self, message: str, nothing_received: bool) -> None:
        super().__init__(message)
        self.nothing_received = nothing_received


class Response:
    """What a request gave: ``status_code`` (0 after a network error), ``headers`` (lower-case
    names), ``content`` (bytes); ``text`` and ``json()`` decode it."""

    __slots__ = ("status_code", "headers", "content", "url", "error", "done_ns")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes, url: str,
                 error: BaseException | None = None, done_ns: int = 0) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.url = url
        self.error = error
        self.done_ns = done_ns  # perf_counter_ns when its last byte was read (or it failed)

    @property
    def ok(self) -> bool:
        return 0 < self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


class PreparedRequest:
    """A request whose bytes are built; calling it (with a Locust context) sends it once more."""

    __slots__ = ("client", "method", "name", "url", "message")

    def __init__(self, client: LeanHttpClient, method: str, name: str, url: str,
                 message: bytes) -> None:
        self.client = client
        self.method = method
        self.name = name
        self.url = url
        self.message = message

    def __call__(self, context: dict | None = None) -> Response:
        return self.client._send_prepared(self, context)


class LeanHttpClient:
    """Keep-alive HTTP/1.1 to one ``base_url`` (``http://host:port``), at most ``connections``
    connections at once; ``get``/``post``/``request`` mirror the ``FastHttpSession`` calls the
    scenarios make (``name``, ``headers``, ``json``, ``data``, ``context``)."""

    def __init__(self, base_url: str, request_event: RequestEvent, connections: int = 64,
                 connection_timeout: float = 10.0, network_timeout: float | None = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"LeanHttpClient speaks plain http://host[:port] only, "
                             f"not {base_url!r}")
        self.base_url = f"http://{parts.netloc}"
        self.address = (parts.hostname, parts.port or 80)
        self.request_event = request_event
        self.connection_timeout = connection_timeout
        self.network_timeout = network_timeout
        self._host_line = f"Host: {parts.netloc}\r\n"
        # LIFO: the most recently used connection first; each with when it was released
        self._idle: list[tuple[socket.socket, float]] = []
        self._slots = _semaphore(connections)
        self.connects = 0  # connections opened (for tests and diagnostics)
        self._inflight: dict[socket.socket, float] = {}  # connection -> deadline (monotonic s)
        self._expired: set[socket.socket] = set()  # shut down by the watchdog
        self._watchdog_started = False
        self._closed = False

    # -- the calls the scenarios make --------------------------------------------------------

    def get(self, url: str, **kwargs: Any) -> Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        return self.request("POST", url, **kwargs)

    def request(self, method: str, url: str, name: str | None = None,
                headers: Mapping[str, str] | None = None, json: Any = None,
                data: bytes | str | None = None, context: dict | None = None) -> Response:
        """Send one request, fire one ``request`` event, return the response (never raises for
        a network error or an error status: both are in the event and the response)."""
        return self.prepare(method, url, name, headers, json, data)(context)

    def prepare(self, method: str, url: str, name: str | None = None,
                headers: Mapping[str, str] | None = None, json: Any = None,
                data: bytes | str | None = None) -> PreparedRequest:
        """The request with its bytes built, to be sent later by calling it with a context
        (a ``Send`` for the open-loop user): building it is then off the timed path."""
        method = method.upper()
        if url.startswith("http://"):  # an absolute URL must name this client's server
            parts = urlsplit(url)
            if f"http://{parts.netloc}" != self.base_url:
                raise ValueError(f"{url!r} is not on {self.base_url}")
            url = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        url = quote(url, safe=URL_SAFE)  # "?q=oak chair" -> "?q=oak%20chair", as requests does
        return PreparedRequest(self, method, name or url, self.base_url + url,
                               self._message(method, url, headers, json, data))

    def _send_prepared(self, request: PreparedRequest, context: dict | None) -> Response:
        start_time = time.time()
        start = time.perf_counter_ns()
        status, response_headers, body, exception = 0, {}, b"", None
        try:
            status, response_headers, body, done = self._exchange(request.method, request.message)
            if status >= 400:
                exception = HTTPStatusError(f"HTTP {status}")
        except OSError as exc:  # refused, reset, closed, timed out, unreadable
            exception = exc
            done = time.perf_counter_ns()
        # timed to the last byte's arrival: parsing it and the listeners are not the server's
        response_time = (done - start) / 1e6
        response = Response(status, response_headers, body, request.url, exception, done)
        self.request_event.fire(request_type=request.method, name=request.name,
                                response_time=response_time, response_length=len(body),
                                response=response, context=context if context is not None else {},
                                exception=exception, start_time=start_time, url=request.url)
        return response

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop()[0].close()

    # -- the wire ----------------------------------------------------------------------------

    def _message(self, method: str, path: str, headers: Mapping[str, str] | None, json: Any,
                 data: bytes | str | None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1\r\n", self._host_line]
        body = b""
        if json is not None and data is None:
            body = jsonlib.dumps(json).encode()
            lines.append("Content-Type: application/json\r\n")
        elif data is not None:
            body = data.encode() if isinstance(data, str) else bytes(data)
        if headers:
            for key, value in headers.items():
                value = str(value)
                if "\r" in value or "\n" in value or "\r" in key or "\n" in key or ":" in key:
                    raise ValueError(f"header {key!r} would break the request head")
                lines.append(f"{key}: {value}\r\n")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        if " " in path or "\r" in path or "\n" in path:
            raise ValueError(f"invalid request target {path!r}")
        return "".join(lines).encode("latin-1") + body

    def _exchange(self, method: str, message: bytes) -> tuple[int, dict[str, str], bytes, int]:
        with self._slots:
            sock, reused = self._checkout()
            try:
                status, headers, body, keep, done = self._roundtrip(sock, method, message)
            except ConnectionClosed as exc:
                sock.close()
                if not (reused and exc.nothing_received and method in IDEMPOTENT):
                    raise
            except OSError as exc:
                sock.close()
                resettable = isinstance(exc, (ConnectionResetError, BrokenPipeError))
                if not (reused and resettable and method in IDEMPOTENT):
                    raise
            else:
                self._release(sock, keep)
                return status, headers, body, done
            # a reused connection the server had closed: once more on a fresh one
            sock = self._connect()
            try:
                status, headers, body, keep, done = self._roundtrip(sock, method, message)
            except BaseException:
                sock.close()
                raise
            self._release(sock, keep)
            return status, headers, body, done

    def _roundtrip(self, sock: socket.socket, method: str,
                   message: bytes) -> tuple[int, dict[str, str], bytes, bool, int]:
        """Send ``message`` and read its response, within ``network_timeout``.

        The timeout is kept by a watchdog that shuts down connections past their deadline,
        not by socket timeouts: those cost a timer per send and per wait (about 10 µs a
        request), the watchdog a dictionary entry."""
        if self.network_timeout is None:
            _send_all(sock, message)
            return _read_response(sock, method)
        self._start_watchdog()
        self._inflight[sock] = time.monotonic() + self.network_timeout
        try:
            _send_all(sock, message)
            return _read_response(sock, method)
        except OSError:
            if sock in self._expired:
                raise TimeoutError(f"no complete response within "
                                   f"{self.network_timeout:g} s") from None
            raise
        finally:
            del self._inflight[sock]
            if sock in self._expired:
                self._expired.discard(sock)
                sock.close()

    def _release(self, sock: socket.socket, keep: bool) -> None:
        if keep and sock.fileno() >= 0:
            self._idle.append((sock, time.monotonic()))
        else:
            sock.close()

    def _checkout(self) -> tuple[socket.socket, bool]:
        """An idle connection the server has not closed, or a new one; and whether reused.

        A connection idle for less than ``PEEK_AFTER_IDLE_S`` is taken as it is: the peek
        costs ~30 µs on the timed path when the code is cold (paced requests), and servers
        close idle keep-alive connections after seconds, not milliseconds."""
        idle = self._idle
        while idle:
            sock, since = idle.pop()
            if time.monotonic() - since < PEEK_AFTER_IDLE_S:
                return sock, True
            sock.settimeout(0.0)
            try:
                sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:  # nothing to read: still open, nothing stray
                sock.settimeout(None)
                return sock, True
            except OSError:
                pass
            sock.close()  # closed by the server (b"") or holding bytes nobody asked for
        return self._connect(), False

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.connection_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)  # the watchdog keeps the network timeout
        except BaseException:
            sock.close()
            raise
        self.connects += 1
        return sock

    def _start_watchdog(self) -> None:
        if self._watchdog_started:
            return
        self._watchdog_started = True
        period = max(0.01, min(1.0, self.network_timeout / 10))
        _background(self._watch, period)

    def _watch(self, period: float) -> None:
        """Shut down every connection past its deadline (its reader then sees EOF)."""
        while not self._closed:
            _sleep(period)
            now = time.monotonic()
            for sock, deadline in list(self._inflight.items()):
                if now > deadline and sock not in self._expired:
                    self._expired.add(sock)
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


def _send_all(sock: socket.socket, data: bytes) -> None:
    """``sendall`` without its per-call ``getsockopt``: one ``send`` in all but rare cases."""
    sent = sock.send(data)
    if sent < len(data):
        view = memoryview(data)
        while sent < len(data):
            sent += sock.send(view[sent:])


def _patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


def _background(function: Any, *args: Any) -> None:
    """Run ``function(*args)`` in a greenlet when gevent has patched the process, else a thread."""
    if _patched():
        import gevent
        gevent.spawn(function, *args)
    else:
        import threading
        threading.Thread(target=function, args=args, daemon=True).start()


def _sleep(seconds: float) -> None:
    time.sleep(seconds)  # gevent's sleep when patched


def _semaphore(n: int) -> Any:
    """A bounded semaphore for greenlets when gevent has patched this process, else for threads."""
    if _patched():
        from gevent.lock import BoundedSemaphore
    else:
        from threading import BoundedSemaphore
    return BoundedSemaphore(n)


def _read_response(sock: socket.socket,
                   method: str) -> tuple[int, dict[str, str], bytes, bool, int]:
    """One response from ``sock``: status, headers, body, whether the connection may be reused,
    and when its last byte was read (``perf_counter_ns``). Interim (1xx) responses are skipped."""
    buffer = b""
    received_any = False
    while True:
        # the head
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise ProtocolError("response head too long")
            chunk = sock.recv(RECV_BYTES)
            done = time.perf_counter_ns()
            if not chunk:
                raise ConnectionClosed("connection closed before the response head was complete",
                                       nothing_received=not received_any and not buffer)
            buffer += chunk
        received_any = True
        head, buffer = buffer[:end], buffer[end + 4:]
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        try:
            status = int(rest[:3])
        except ValueError:
            raise ProtocolError(f"not an HTTP status line: {lines[0][:80]!r}") from None
        if not version.startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"malformed header line {line[:80]!r}")
            key = key.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if 100 <= status < 200:
            continue  # 100 Continue, 103 Early Hints: the real response follows
        break
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    if method == "HEAD" or status in NO_BODY_STATUSES:
        return status, headers, b"", keep and not buffer, done
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, buffer, done = _read_chunked(sock, buffer, done)
        return status, headers, body, keep and not buffer, done
    length = headers.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise ProtocolError(f"bad Content-Length {length!r}") from None
        while len(buffer) < n:
            chunk = sock.recv(max(RECV_BYTES, n - len(buffer)))
            done = time.perf_counter_ns()
            if not chunk:
                raise ConnectionClosed("connection closed inside the response body", False)
            buffer += chunk
        return status, headers, buffer[:n], keep and len(buffer) == n, done
    # no length: the body runs to the connection's close
    parts = [buffer]
    while chunk := sock.recv(RECV_BYTES):
        done = time.perf_counter_ns()
        parts.append(chunk)
    return status, headers, b"".join(parts), False, done


def _read_chunked(sock: socket.socket, buffer: bytes, done: int) -> tuple[bytes, bytes, int]:
    """A chunked body (RFC 9112 section 7.1), whatever followed it in ``buffer``, and when
    its last byte was read."""
    body = []

    def need(n: int) -> None:
        nonlocal buffer, done
        while len(buffer) < n:
            chunk = sock.recv(RECV_BYTES)
            done = time.perf_counter_ns()
            if not chunk:
                raise ConnectionClosed("connection closed inside a chunked body", False)
            buffer += chunk

    while True:
        while (eol := buffer.find(b"\r\n")) < 0:
            need(len(buffer) + 1)
        try:
            size = int(buffer[:eol].split(b";", 1)[0], 16)
        except ValueError:
            raise ProtocolError("bad chunk size line") from None
        buffer = buffer[eol + 2:]
        if size == 0:  # the last chunk, then trailers up to an empty line
            while True:
                while (eol := buffer.find(b"\r\n")) < 0:
                    need(len(buffer) + 1)
                line, buffer = buffer[:eol], buffer[eol + 2:]
                if not line:
                    return b"".join(body), buffer, done
        need(size + 2)
        body.append(buffer[:size])
        buffer = buffer[size + 2:]
