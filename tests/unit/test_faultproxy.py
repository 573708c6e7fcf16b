"""The fault proxy on loopback between a HopClient and a server: each mode does what it says,
seen from the caller and from the server."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from bench.system.faultproxy import POLL_S, Proxy, State, write_state
from shop.errors import Unavailable
from shop.hops import HopClient, HopSettings
from tests.unit.test_hops import read_request, response, serve


def keep_answering(conn, seen):
    while (head := read_request(conn)) is not None:
        seen.append(head)
        conn.sendall(response(200, {"ok": True}))


@pytest.fixture
def proxied(tmp_path):
    """(a HopClient through a fault proxy, the server's seen requests, set(mode, **params))."""
    state_path = tmp_path / "state.json"
    write_state(state_path, "pass")
    with serve(keep_answering) as (url, seen):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        host, port = url.removeprefix("http://").split(":")
        proxy = Proxy(listener, (host, int(port)), State(state_path))
        threading.Thread(target=proxy.serve, daemon=True).start()
        hop = HopClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "cred",
                        HopSettings(read_timeout_s=0.5, retries=0, breaker_failures=0),
                        name="billing")

        def set_mode(mode, **params):
            write_state(state_path, mode, **params)
            time.sleep(POLL_S * 4)  # the proxy polls its state file

        yield hop, seen, set_mode
        listener.close()


def test_pass_and_errors(proxied):
    hop, seen, set_mode = proxied
    assert hop.call("/x", {}, idempotent=True) == {"ok": True}
    set_mode("errors", share=1.0)
    with pytest.raises(Unavailable, match="injected by the fault proxy"):
        hop.call("/x", {}, idempotent=True)
    assert len(seen) == 1  # the server never saw the failed one
    set_mode("pass")
    assert hop.call("/x", {}, idempotent=True) == {"ok": True} and len(seen) == 2


def test_latency_is_added_per_request(proxied):
    hop, _, set_mode = proxied
    set_mode("latency", latency_ms=150, jitter_ms=20)
    started = time.perf_counter()
    hop.call("/x", {}, idempotent=True)
    assert 0.13 <= time.perf_counter() - started < 0.45


def test_reset_and_blackhole(proxied):
    hop, seen, set_mode = proxied
    hop.call("/x", {}, idempotent=True)
    set_mode("reset")
    with pytest.raises(Unavailable, match="connection dropped|no answer|cannot connect"):
        hop.call("/x", {}, idempotent=False)
    set_mode("blackhole")
    started = time.perf_counter()
    with pytest.raises(Unavailable, match="no answer"):
        hop.call("/x", {}, idempotent=False)
    assert time.perf_counter() - started >= 0.45  # the read timeout, nothing came back
    assert len(seen) == 1
