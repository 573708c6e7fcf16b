"""The floors are timed from each slot's intended time, like the load generator's requests:
a slow round trip delays the next paced ones, and that wait counts in their latency."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.results import hdr
from bench.system.floors import PING, http_round_trips, paced, paced_slots, tcp_round_trips

GAP_S = 0.01
SLOW_S = 6 * GAP_S  # one round trip takes this long: the next five slots are due before it ends
SLOW_INDEX = 3
COUNT = 12


@contextmanager
def echo_server() -> Iterator[tuple[str, int]]:
    """An echo server on loopback whose SLOW_INDEX-th message waits SLOW_S before the echo."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            n = 0
            while data := conn.recv(len(PING)):
                got = len(data)
                while got < len(PING):
                    more = conn.recv(len(PING) - got)
                    if not more:
                        return
                    got += len(more)
                if n == SLOW_INDEX:
                    time.sleep(SLOW_S)
                conn.sendall(PING)
                n += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[:2]
    finally:
        server.close()
        thread.join(5)


@contextmanager
def http_server() -> Iterator[str]:
    """A keep-alive HTTP server on loopback whose SLOW_INDEX-th request waits SLOW_S."""
    counter = iter(range(10**6))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            if next(counter) == SLOW_INDEX:
                time.sleep(SLOW_S)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def values_us(blocks: list) -> list[int]:
    """The recorded values (bucket highest-equivalents), one per sample."""
    merged = hdr.merge(blocks)
    out = []
    for item in merged.get_recorded_iterator():
        out += [item.value_iterated_to] * item.count_at_value_iterated_to
    return out


def measure_tcp(gap_s: float) -> list[int]:
    with echo_server() as address:
        return values_us(tcp_round_trips(address, COUNT, warmup=0, gap_s=gap_s, block=5))


def measure_http(gap_s: float) -> list[int]:
    with http_server() as url:
        return values_us(http_round_trips(url, COUNT, warmup=0, gap_s=gap_s, block=5))


@pytest.mark.parametrize("measure", [measure_tcp, measure_http], ids=["tcp", "http"])
def test_a_slow_round_trip_makes_the_next_paced_ones_late_and_that_counts(measure: Callable):
    values = measure(GAP_S)
    assert len(values) == COUNT
    # the slow one and the slots due while it ran, each waiting for it less one gap more
    waited = [v for v in values if v >= 1.5 * GAP_S * 1e6]
    assert len(waited) >= round(SLOW_S / GAP_S) - 2, values
    assert max(values) >= SLOW_S * 1e6 * 0.999


@pytest.mark.parametrize("measure", [measure_tcp, measure_http], ids=["tcp", "http"])
def test_unpaced_round_trips_are_timed_from_their_own_start(measure: Callable):
    """Back to back there is no schedule to fall behind: only the slow call itself is slow."""
    values = measure(0.0)
    assert len(values) == COUNT
    assert max(values) >= SLOW_S * 1e6 * 0.999
    assert sum(1 for v in values if v >= SLOW_S * 1e6 / 2) == 1, values


def test_paced_slots_are_gap_apart_and_paced_yields_the_same_indices():
    start = time.perf_counter_ns()
    slots = list(paced_slots(5, GAP_S))
    assert [i for i, _ in slots] == list(range(5)) == list(paced(5, 0.0))
    gaps = {b - a for (_, a), (_, b) in zip(slots, slots[1:])}
    assert gaps == {round(GAP_S * 1e9)}
    assert slots[0][1] >= start and time.perf_counter_ns() >= slots[-1][1]
