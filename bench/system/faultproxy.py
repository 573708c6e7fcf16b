"""A small fault proxy on loopback, between a server and every process that calls it.

There is no netem and no Toxiproxy on these machines, so network faults on the way into a
server are made here: the launcher starts one of these per faulted server (its own process
group, on the system's CPUs) and gives callers its address instead of the server's. It
forwards bytes both ways and, as a state file it polls says (``write_state``), can:

- ``pass``: forward (the cost of the extra loopback leg is measured with everything else);
- ``latency``: hold each request ``latency_ms`` ± uniform ``jitter_ms`` before forwarding it;
- ``errors``: answer a ``share`` of requests itself with a JSON 503, never forwarding them
  (what a failing load balancer or sidecar does: the server never saw the request);
- ``reset``: reset each connection (RST) at its next request, and every new one;
- ``blackhole``: take requests and never forward or answer them (a silent partition).

Requests are parsed only enough to find where each ends (Content-Length; the shop's hops
never pipeline or chunk), so a fault applies per request. Bounded: at most
``MAX_CONNECTIONS`` at once (more are closed), threads only for those; it stops with its
process group.

Run: ``python -m bench.system.faultproxy --listen-fd N --target 127.0.0.1:PORT --state FILE``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

MODES = ("pass", "latency", "errors", "reset", "blackhole")
MAX_CONNECTIONS = 256
POLL_S = 0.02
INJECTED = json.dumps({"error": "unavailable",
                       "detail": "injected by the fault proxy"}).encode()
INJECTED_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(INJECTED)).encode() + b"\r\n\r\n" + INJECTED)


def write_state(path: Path, mode: str, **params: float) -> None:
    """Set the proxy's fault (atomically: it never reads half a file)."""
    if mode not in MODES:
        raise ValueError(f"fault proxy mode must be one of {', '.join(MODES)}, not {mode!r}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"mode": mode, **params}))
    os.replace(tmp, path)


class State:
    """The current fault, re-read when the state file changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime = 0
        self.current: dict[str, Any] = {"mode": "pass"}
        self._refresh()
        threading.Thread(target=self._watch, daemon=True).start()

    def _refresh(self) -> None:
        try:
            mtime = self._path.stat().st_mtime_ns
            if mtime != self._mtime:
                self.current = json.loads(self._path.read_text())
                self._mtime = mtime
        except (OSError, ValueError):
            pass

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_S)
            self._refresh()


def read_request(sock: socket.socket, buffer: bytearray) -> bytes | None:
    """The next whole request from the client (head and Content-Length body), or None at the
    end of the stream. ``buffer`` keeps bytes read past it."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head_end = buffer.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buffer[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    while len(buffer) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    request = bytes(buffer[:head_end + length])
    del buffer[:head_end + length]
    return request


def reset(sock: socket.socket) -> None:
    """Close with a RST, not a FIN: the peer sees 'connection reset'."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Proxy:
    def __init__(self, listener: socket.socket, target: tuple[str, int], state: State) -> None:
        self.listener, self.target, self.state = listener, target, state
        self.open = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.rng = random.Random()

    def serve(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if not self.open.acquire(blocking=False):
                client.close()
                continue
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        upstream = None
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.state.current.get("mode") == "reset":
                reset(client)
                return
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()
            buffer = bytearray()
            while (request := read_request(client, buffer)) is not None:
                fault = self.state.current
                mode = fault.get("mode", "pass")
                if mode == "reset":
                    reset(client)
                    return
                if mode == "blackhole":
                    continue  # taken, never forwarded, never answered
                if mode == "latency":
                    jitter = float(fault.get("jitter_ms", 0))
                    time.sleep(max(0.0, float(fault.get("latency_ms", 0))
                                   + self.rng.uniform(-jitter, jitter)) / 1000)
                if mode == "errors" and self.rng.random() < float(fault.get("share", 0)):
                    client.sendall(INJECTED_RESPONSE)
                    continue
                upstream.sendall(request)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
            self.open.release()

    def _answers(self, upstream: socket.socket, client: socket.socket) -> None:
        """Stream the server's responses back (dropped while black-holed)."""
        try:
            while chunk := upstream.recv(65536):
                if self.state.current.get("mode") != "blackhole":
                    client.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    listener = socket.socket(fileno=args.listen_fd)
    listener.listen(128)
    Proxy(listener, (host, int(port)), State(args.state)).serve()


if __name__ == "__main__":
    main()
