"""The hop: the keep-alive race reproduced, survived by HopClient, and errors mapped back."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests

from shop.billing.api import InsufficientFunds
from shop.errors import RemoteError, Unavailable
from shop.hops import HopClient, HopSettings


def read_request(conn: socket.socket) -> bytes | None:
    """One HTTP request (head and Content-Length body), or None at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head


def response(status: int, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


@contextmanager
def serve(handle) -> Iterator[tuple[str, list]]:
    """A loopback server running ``handle(conn, seen)`` per connection; (base URL, seen)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_run, args=(conn,), daemon=True).start()

    def _run(conn: socket.socket) -> None:
        with conn:
            try:
                handle(conn, seen)
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        stop.set()
        listener.close()


def one_answer_then_drop(conn: socket.socket, seen: list) -> None:
    """Answer one request with keep-alive, then take the next request and close unanswered:
    the server's keep-alive timeout firing just as the client reuses the connection."""
    head = read_request(conn)
    if head is None:
        return
    seen.append(head)
    conn.sendall(response(200, {"ok": True}))
    head = read_request(conn)
    if head is not None:
        seen.append(head)


def test_naive_shared_requests_session_fails_on_a_reused_connection():
    """The pitfall, reproduced: every reuse of a pooled connection the server dropped fails."""
    with serve(one_answer_then_drop) as (url, _):
        session = requests.Session()
        failures = []
        for _ in range(20):
            try:
                session.post(url + "/x", json={"n": 1}, timeout=5)
            except requests.ConnectionError as exc:
                failures.append(exc)
        assert len(failures) == 10  # each connection: one success, then a failure
        assert all("Connection aborted" in str(f) for f in failures)


def test_hop_retries_an_idempotent_call_on_a_fresh_connection():
    with serve(one_answer_then_drop) as (url, seen):
        # no bulkhead: 8 threads against a one-connection-at-a-time server is the point here
        hop = HopClient(url, "cred", HopSettings(bulkhead_share=0))
        assert all(hop.call("/x", {"n": i}, idempotent=True) == {"ok": True} for i in range(100))
        with ThreadPoolExecutor(8) as pool:  # the same under gthread-like concurrency
            results = list(pool.map(lambda i: hop.call("/x", {"n": i}, idempotent=True), range(400)))
        assert results == [{"ok": True}] * 400
        assert all(b"X-Seambench-Service: cred" in head for head in seen)
        hop.close()


def test_hop_never_resends_a_non_idempotent_call():
    with serve(one_answer_then_drop) as (url, seen):
        hop = HopClient(url, "cred")
        assert hop.call("/x", {}, idempotent=False) == {"ok": True}
        with pytest.raises(Unavailable, match="connection dropped"):
            hop.call("/x", {}, idempotent=False)
        assert len(seen) == 2  # sent once, dropped, not sent again


def test_hop_reuses_connections():
    def keep_alive(conn, seen):
        seen.append("connection")
        while read_request(conn) is not None:
            conn.sendall(response(200, {"ok": True}))

    with serve(keep_alive) as (url, seen):
        hop = HopClient(url, "cred")
        for _ in range(50):
            hop.call("/x", {}, idempotent=True)
        assert seen == ["connection"]


def test_an_added_latency_delays_every_hop_by_at_least_that_much():
    def keep_alive(conn, seen):
        while read_request(conn) is not None:
            conn.sendall(response(200, {"ok": True}))

    with serve(keep_alive) as (url, _):
        plain, slowed = HopClient(url, "cred"), HopClient(url, "cred", HopSettings(added_latency_ms=20))
        for hop in (plain, slowed):
            hop.call("/x", {}, idempotent=True)  # connected and warm
        timings = {}
        for label, hop in (("plain", plain), ("slowed", slowed)):
            start = time.perf_counter()
            for _ in range(5):
                hop.call("/x", {}, idempotent=True)
            timings[label] = (time.perf_counter() - start) / 5
        assert timings["slowed"] >= 0.020 > timings["plain"]


def test_remote_domain_errors_come_back_as_the_same_class():
    def answer(conn, seen):
        while read_request(conn) is not None:
            conn.sendall(response(402, {"error": "insufficient_funds", "detail": "short by 5"}))

    with serve(answer) as (url, _):
        with pytest.raises(InsufficientFunds, match="short by 5"):
            HopClient(url, "cred").call("/x", {}, idempotent=True)


def test_unknown_error_codes_and_non_json_are_remote_errors():
    def answer(conn, seen):
        while (head := read_request(conn)) is not None:
            if b"/weird" in head:
                conn.sendall(response(418, {"error": "teapot"}))
            else:
                conn.sendall(b"HTTP/1.1 502 X\r\nContent-Length: 4\r\n\r\noops")

    with serve(answer) as (url, _):
        hop = HopClient(url, "cred")
        with pytest.raises(RemoteError, match="teapot"):
            hop.call("/weird", {}, idempotent=True)
        with pytest.raises(RemoteError, match="not JSON"):
            hop.call("/html", {}, idempotent=True)


def test_a_slow_destination_times_out_without_retrying():
    def stall(conn, seen):
        while read_request(conn) is not None:
            seen.append(time.monotonic())
            time.sleep(2)

    with serve(stall) as (url, seen):
        hop = HopClient(url, "cred", HopSettings(read_timeout_s=0.2))
        started = time.monotonic()
        with pytest.raises(Unavailable):
            hop.call("/x", {}, idempotent=True)
        assert time.monotonic() - started < 1.0 and len(seen) == 1


def test_a_closed_port_is_unavailable_at_once():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        started = time.monotonic()
        with pytest.raises(Unavailable, match="auth is unavailable: cannot connect") as err:
            HopClient(f"http://127.0.0.1:{port}", "cred", name="auth").call("/x", {}, idempotent=True)
        assert str(port) not in str(err.value)  # no internal address in what a client may see
        assert time.monotonic() - started < 1.0


def test_bad_destination_is_refused():
    with pytest.raises(ValueError):
        HopClient("https://example.invalid", "cred")
