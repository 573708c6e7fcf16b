"""The floors a hop is compared with, measured in the same run as the hops.

* raw TCP: a 64-byte ping-pong over one loopback connection to an echo server (the
  physical floor: two context switches and the kernel's loopback path);
* raw HTTP: ``http.client`` keep-alive GETs to a minimal Flask endpoint served by gunicorn
  with exactly the settings the shop's processes get (the framework floor);
* nested HTTP: the same GET made from inside a second such server (``GET /nested`` on it
  calls ``/`` on the first with a keep-alive ``http.client`` connection per thread). Its
  latency minus the raw HTTP one is what a bare hop costs when the caller is itself a
  gunicorn worker sharing the system's CPUs: the floor a shop hop should be compared with.

The servers run pinned to the system's CPU set, and the client runs there too while it
measures, because a hop's caller is a process of the system. Calls are paced like the hop
step's requests and timed, like them, from their slot's intended time (so a late wake-up, or
a slow call that delays the next one, counts), with ``perf_counter_ns``, in µs histograms.
"""
from __future__ import annotations

import http.client
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from hdrh.histogram import HdrHistogram

from bench.results import hdr
from bench.system.launcher import (HOST, LaunchError, LaunchSettings, bind_listeners, fd_bind,
                                   gunicorn_command, is_ready)
from bench.system.processes import child_env, signals_held, spawn_group, stop_groups
from shop.address import address_of

PING = b"x" * 64


UPSTREAM_ENV = "SEAMBENCH_FLOOR_UPSTREAM"


def create_floor_app() -> Flask:
    """The minimal endpoint: ``GET /`` answers a small JSON body, ``/readyz`` for start-up;
    with ``SEAMBENCH_FLOOR_UPSTREAM=http://host:port`` also ``GET /nested``, which makes one
    keep-alive ``GET /`` to that server before answering."""
    app = Flask("seambench-floor")
    upstream = os.environ.get(UPSTREAM_ENV, "")
    connections = threading.local()

    @app.get("/")
    def root() -> dict:
        return {"ok": True}

    @app.get("/nested")
    def nested() -> dict:
        for attempt in (1, 2):  # the upstream may have closed an idle connection between trials
            conn = getattr(connections, "conn", None)
            if conn is None:
                conn = connections.conn = http.client.HTTPConnection(*address_of(upstream), timeout=5)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                return {"ok": response.status == 200}
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                connections.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @app.get("/readyz")
    def ready() -> dict:
        return {"ready": True}

    return app


def echo_main(fd: int) -> None:
    """The echo server: serve connections on the listening socket ``fd``, one at a time."""
    server = socket.socket(fileno=fd)
    server.listen(16)
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)


@dataclass(frozen=True)
class FloorServers:
    tcp_address: tuple[str, int]
    http_url: str  # the minimal endpoint
    front_url: str  # a second one whose /nested calls the first


@contextmanager
def floor_servers(settings: LaunchSettings, log_dir: Path) -> Iterator[FloorServers]:
    """Start the echo server and the minimal Flask endpoint; stop both on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    listeners = bind_listeners(["floor-tcp", "floor-http", "floor-front"])
    urls = {name: f"http://{HOST}:{sock.getsockname()[1]}" for name, sock in listeners.items()}
    popens = []
    try:
        tcp = listeners.pop("floor-tcp")
        popens.append(spawn_group([sys.executable, "-c", f"from bench.system.floors import echo_main; "
                                   f"echo_main({tcp.fileno()})"], log_dir / "floor-tcp.log",
                                  child_env(), settings.cpus, (tcp.fileno(),)))
        tcp.close()
        for name, extra in (("floor-http", {}), ("floor-front", {UPSTREAM_ENV: urls["floor-http"]})):
            sock = listeners.pop(name)
            popens.append(spawn_group(gunicorn_command("bench.system.floors:create_floor_app()",
                                                       fd_bind(sock), settings, name),
                                      log_dir / f"{name}.log", child_env(**extra), settings.cpus,
                                      (sock.fileno(),)))
            sock.close()
        deadline = time.monotonic() + settings.ready_timeout_s
        while not (is_ready(urls["floor-http"]) and is_ready(urls["floor-front"])):
            if time.monotonic() > deadline or any(p.poll() is not None for p in popens):
                raise LaunchError(f"the floor servers did not start; see {log_dir}")
            time.sleep(0.05)
        yield FloorServers(address_of(urls["floor-tcp"]), urls["floor-http"], urls["floor-front"])
    finally:
        with signals_held():
            for sock in listeners.values():
                sock.close()
            stop_groups(popens)


def paced(count: int, gap_s: float) -> Iterator[int]:
    """Yield 0..count-1, each at its slot on a fixed schedule ``gap_s`` apart (no pacing if 0).

    Pacing matters: between paced calls the CPUs idle, and waking from idle costs far more
    than a back-to-back loop shows, so floors are paced like the hop step they are set against."""
    for i, _slot_ns in paced_slots(count, gap_s):
        yield i


def paced_slots(count: int, gap_s: float) -> Iterator[tuple[int, int]]:
    """``paced``, also yielding each slot's intended time (``perf_counter_ns``): a call is
    timed from it, as the load generator times a request from its intended send time. With
    no pacing (``gap_s`` 0) a call's slot is the moment it is yielded."""
    gap_ns = round(gap_s * 1e9)
    start_ns = time.perf_counter_ns()
    for i in range(count):
        if not gap_ns:
            yield i, time.perf_counter_ns()
            continue
        slot_ns = start_ns + i * gap_ns
        delay_ns = slot_ns - time.perf_counter_ns()
        if delay_ns > 0:
            time.sleep(delay_ns / 1e9)
        yield i, slot_ns


class Blocked:
    """Round trips recorded as consecutive blocks of ``size`` samples (µs histograms), so a
    bootstrap can resample within a trial rather than only whole trials."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.blocks: list[HdrHistogram] = []

    def record_value(self, value_us: int) -> None:
        if not self.blocks or self.blocks[-1].get_total_count() >= self.size:
            self.blocks.append(hdr.new_histogram())
        self.blocks[-1].record_value(value_us)


def tcp_round_trips(address: tuple[str, int], count: int, warmup: int = 20,
                    gap_s: float = 0.0, block: int = 25) -> list[HdrHistogram]:
    """``count`` 64-byte ping-pongs on one connection, ``gap_s`` apart: blocks of µs."""
    histogram = Blocked(block)
    with socket.create_connection(address, timeout=5) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, slot_ns in paced_slots(warmup + count, gap_s):
            conn.sendall(PING)
            got = 0
            while got < len(PING):
                got += len(conn.recv(65536))
            elapsed = (time.perf_counter_ns() - slot_ns) // 1000
            if i >= warmup:
                histogram.record_value(max(1, elapsed))
    return histogram.blocks


def http_round_trips(url: str, count: int, warmup: int = 20, path: str = "/",
                     gap_s: float = 0.0, block: int = 25) -> list[HdrHistogram]:
    """``count`` keep-alive GETs of ``path`` with ``http.client``, ``gap_s`` apart: blocks of µs."""
    conn = http.client.HTTPConnection(*address_of(url), timeout=5)
    histogram = Blocked(block)
    try:
        for i, slot_ns in paced_slots(warmup + count, gap_s):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            elapsed = (time.perf_counter_ns() - slot_ns) // 1000
            if response.status != 200:
                raise RuntimeError(f"floor endpoint answered {response.status}")
            if i >= warmup:
                histogram.record_value(max(1, elapsed))
    finally:
        conn.close()
    return histogram.blocks
