"""The generator's lean HTTP client against a scripted loopback server: keep-alive reuse, stale
connections, error statuses as failures, JSON bodies, chunked responses, the connection limit,
timeouts, and the one ``request`` event per request that Locust's listeners rely on."""
from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.load.leanhttp import PEEK_AFTER_IDLE_S, HTTPStatusError, LeanHttpClient


class Events:
    def __init__(self) -> None:
        self.fired: list[dict] = []

    def fire(self, **kwargs) -> None:
        self.fired.append(kwargs)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []  # method, path, headers, body, connection
        self.connections = 0
        self.open_now = 0
        self.open_max = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()


class Handler(socketserver.BaseRequestHandler):
    """HTTP/1.1 keep-alive by hand, so a test can script what the wire does."""

    def handle(self) -> None:
        server: Server = self.server
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with server.lock:
            server.connections += 1
            connection = server.connections
            server.open_now += 1
            server.open_max = max(server.open_max, server.open_now)
        served = 0
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = {k.strip().lower(): v.strip()
                           for k, _, v in (line.partition(":") for line in lines[1:])}
                length = int(headers.get("content-length", 0))
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                with server.lock:
                    server.requests.append({"method": method, "path": path, "headers": headers,
                                            "body": body, "connection": connection})
                served += 1
                if not self.respond(sock, method, path, headers, body, served):
                    return
        finally:
            with server.lock:
                server.open_now -= 1
            sock.close()

    def respond(self, sock, method, path, headers, body, served) -> bool:
        """Answer one request; False closes the connection."""
        def send(status: int, payload: bytes, extra: str = "") -> None:
            sock.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(payload)}\r\n{extra}\r\n".encode() + payload)

        if path.partition("?")[0] == "/echo":
            send(200, json.dumps({"method": method, "path": path, "headers": headers,
                                  "body": body.decode()}).encode())
        elif path.startswith("/status/"):
            send(int(path.rsplit("/", 1)[1]), b'{"error": "scripted"}')
        elif path == "/chunked":
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n")
        elif path == "/close-header":
            send(200, b"{}", "Connection: close\r\n")
            return False
        elif path == "/quiet-close":  # answers, then closes with no word (a keep-alive timeout)
            send(200, b"{}")
            time.sleep(0.05)
            return False
        elif path == "/drop-if-reused":  # a reused connection is dropped with the request unread
            if served > 1:
                return False
            send(200, b"{}")
        elif path == "/slow":
            time.sleep(0.1)
            send(200, b"{}")
        elif path == "/hang":
            self.server.stop.wait(10)
            return False
        else:
            send(200, b'{"ok": true}')
        return True


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()


def client_for(server: Server, events: Events, **kwargs) -> LeanHttpClient:
    host, port = server.server_address
    return LeanHttpClient(f"http://{host}:{port}", events, **kwargs)


def test_keep_alive_reuses_one_connection_and_fires_one_event_per_request(server):
    events = Events()
    client = client_for(server, events)
    for i in range(20):
        response = client.get("/", name="root", context={"i": i})
        assert response.status_code == 200 and response.json() == {"ok": True}
    assert server.connections == 1 and client.connects == 1
    assert len(events.fired) == 20
    event = events.fired[-1]
    assert event["request_type"] == "GET" and event["name"] == "root"
    assert event["context"] == {"i": 19} and event["exception"] is None
    assert event["response_length"] == len(b'{"ok": true}') and event["response"] is response
    assert 0 < event["response_time"] < 1000 and event["url"].endswith("/")
    assert 0 < response.done_ns <= time.perf_counter_ns()


def test_json_post_sends_body_headers_and_content_type(server):
    events = Events()
    client = client_for(server, events)
    body = {"items": [{"sku": "SKU-000001", "qty": 2}]}
    headers = {"Authorization": "Bearer t0k", "Idempotency-Key": "abc123"}
    response = client.post("/echo", json=body, headers=headers, name="checkout")
    echoed = response.json()
    assert echoed["method"] == "POST" and json.loads(echoed["body"]) == body
    assert echoed["headers"]["authorization"] == "Bearer t0k"
    assert echoed["headers"]["idempotency-key"] == "abc123"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["headers"]["host"] == "%s:%d" % server.server_address
    assert client.post("/echo", name="empty").json()["headers"]["content-length"] == "0"
    # a query is sent percent-encoded where it must be, as requests and Locust's clients do
    assert client.get("/echo?q=oak chair&limit=10").json()["path"] == "/echo?q=oak%20chair&limit=10"
    assert client.get("/echo?q=a%2Fb").json()["path"] == "/echo?q=a%2Fb"
    with pytest.raises(ValueError):
        client.get("/", headers={"X-Bad": "a\r\nInjected: 1"})


def test_error_statuses_are_failures_with_their_response(server):
    events = Events()
    client = client_for(server, events)
    for status in (400, 401, 404, 500, 503):
        response = client.get(f"/status/{status}", name="err")
        assert response.status_code == status and not response.ok
        assert "scripted" in response.text
        assert isinstance(events.fired[-1]["exception"], HTTPStatusError)
        assert str(status) in str(events.fired[-1]["exception"])
    assert client.get("/status/201").ok and events.fired[-1]["exception"] is None
    assert server.connections == 1  # an error status is not a broken connection


def test_chunked_and_connection_close_responses(server):
    client = client_for(server, Events())
    assert client.get("/chunked").content == b"hello, world"
    assert client.get("/").status_code == 200  # the chunked connection stayed usable
    assert server.connections == 1
    assert client.get("/close-header").status_code == 200
    assert client.get("/").status_code == 200
    assert server.connections == 2  # "Connection: close" honoured


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(server):
    events = Events()
    client = client_for(server, events)
    client.get("/quiet-close")
    time.sleep(PEEK_AFTER_IDLE_S + 0.1)  # the server's FIN arrives while the connection idles
    for method in ("POST", "GET"):  # a POST is never retried: the peek must have caught it
        assert client.request(method, "/").status_code == 200
    assert all(e["exception"] is None for e in events.fired)
    assert server.connections == 2


def test_only_idempotent_requests_are_retried_on_a_dropped_reused_connection(server):
    events = Events()
    client = client_for(server, events)
    client.get("/drop-if-reused")
    assert client.get("/drop-if-reused").status_code == 200  # retried once, fresh connection
    assert events.fired[-1]["exception"] is None
    assert server.connections == 2
    response = client.post("/drop-if-reused")  # the reused connection drops it: no second try
    assert response.status_code == 0 and isinstance(events.fired[-1]["exception"], ConnectionError)
    assert [r["method"] for r in server.requests].count("POST") == 1
    assert server.connections == 2


def test_network_errors_and_timeouts_are_failures_not_exceptions(server):
    events = Events()
    client = client_for(server, events, network_timeout=0.3)
    started = time.monotonic()
    response = client.get("/hang", name="hang")
    assert time.monotonic() - started < 3
    assert response.status_code == 0 and isinstance(events.fired[-1]["exception"], TimeoutError)
    assert client.get("/").status_code == 200  # the client goes on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nobody listens here once closed
    refused = LeanHttpClient(f"http://127.0.0.1:{dead_port}", events)
    assert refused.get("/").status_code == 0
    assert isinstance(events.fired[-1]["exception"], ConnectionRefusedError)


def test_the_connection_limit_holds_under_concurrency(server):
    events = Events()
    client = client_for(server, events, connections=3)
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: client.get("/slow").status_code, range(12)))
    assert statuses == [200] * 12
    assert server.open_max <= 3 and client.connects == 3
    assert len(events.fired) == 12


def test_only_plain_http_to_its_own_server():
    with pytest.raises(ValueError):
        LeanHttpClient("https://127.0.0.1:1", Events())
    client = LeanHttpClient("http://127.0.0.1:1", Events())
    with pytest.raises(ValueError):
        client.get("http://127.0.0.2:1/")


def test_a_prepared_request_is_a_send_that_can_be_called_again(server):
    events = Events()
    client = client_for(server, events)
    send = client.prepare("post", "/echo", name="topup", json={"amount_cents": 5},
                          headers={"Authorization": "Bearer x"})
    first, second = send({"i": 1}), send({"i": 2})
    assert first.json() == second.json()
    assert json.loads(first.json()["body"]) == {"amount_cents": 5}
    assert [e["context"] for e in events.fired] == [{"i": 1}, {"i": 2}]
    assert {(e["name"], e["request_type"]) for e in events.fired} == {("topup", "POST")}
