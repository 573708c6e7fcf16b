"""Slow clients, as an attacker would send them, and a probe of whether anyone else is served.

Each kind opens its connections and then trickles (or withholds) the rest of a request
forever: half a request line, headers that never end, a body announced and never sent, a
chunk that never ends. A connection the server closes is opened again at once, so the
attack holds its count for as long as it runs. One thread drives every socket.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# kind -> (what is sent on connecting, what is sent again every TRICKLE_S; b"" = nothing)
KINDS: dict[str, tuple[bytes, bytes]] = {
    "half request line": (b"GET /heal", b""),
    "endless headers": (b"GET /healthz HTTP/1.1\r\nHost: shop\r\n", b"X-Slow: 1\r\n"),
    "body never comes": (b"POST /auth/login HTTP/1.1\r\nHost: shop\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", b""),
    "endless chunk": (b"POST /auth/login HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json"
                      b"\r\nTransfer-Encoding: chunked\r\n\r\nfffff\r\n{", b" "),
}
TRICKLE_S = 1.0


@dataclass
class Attack:
    """What the attack did: connections opened (reopens included) and refused."""

    opened: int = 0
    refused: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


def _open(address: tuple[str, int], first: bytes, attack: Attack) -> socket.socket | None:
    try:
        sock = socket.create_connection(address, timeout=1.0)
        sock.sendall(first)
        sock.setblocking(False)
        attack.opened += 1
        return sock
    except OSError:
        attack.refused += 1
        return None


def _alive(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) != b""  # anything back (an error page) means it was answered
    except BlockingIOError:
        return True
    except OSError:
        return False


def _drive(address: tuple[str, int], per_kind: int, kinds: list[str], attack: Attack) -> None:
    held: list[tuple[str, socket.socket | None]] = [(k, None) for k in kinds for _ in range(per_kind)]
    while not attack.stop.is_set():
        for i, (kind, sock) in enumerate(held):
            first, more = KINDS[kind]
            if sock is not None and _alive(sock):
                if more:
                    try:
                        sock.send(more)
                    except OSError:
                        pass
                continue
            if sock is not None:
                sock.close()
            held[i] = (kind, _open(address, first, attack))
        attack.stop.wait(TRICKLE_S)
    for _, sock in held:
        if sock is not None:
            sock.close()


@contextmanager
def slow_clients(address: tuple[str, int], per_kind: int,
                 kinds: list[str] | None = None) -> Iterator[Attack]:
    """``per_kind`` connections of each kind (default: all of KINDS) held open against
    ``address`` for as long as the block runs."""
    attack = Attack()
    thread = threading.Thread(target=_drive, daemon=True,
                              args=(address, per_kind, kinds or list(KINDS), attack))
    thread.start()
    try:
        yield attack
    finally:
        attack.stop.set()
        thread.join(10)


def probe(address: tuple[str, int], seconds: float, every_s: float = 0.1,
          timeout_s: float = 1.0) -> list[float | None]:
    """GET /healthz on a new connection every ``every_s`` for ``seconds``: the latency of each
    (s), None for one not answered 200 within ``timeout_s``."""
    out: list[float | None] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            conn = http.client.HTTPConnection(*address, timeout=timeout_s)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
            took = time.monotonic() - start
            out.append(took if ok and took < timeout_s else None)
        except OSError:
            out.append(None)
        time.sleep(max(0.0, every_s - (time.monotonic() - start)))
    return out
