"""Benchmark: what the breaker, the bulkhead and the retry budget add to one healthy hop.

A minimal keep-alive HTTP endpoint (a thread of this process, TCP_NODELAY) answers every
call at once; two HopClients call it one after another: one with the defaults (breaker,
bulkhead, retry budget) and one with all three off. Blocks of calls alternate between them
(A B A B ...) so drift hits both; each prints its p50 and p99 in µs, and the difference of
the p50s is the cost of the resilience machinery on the fast path (tenacity is entered only
after a failure, so it is not in it).

    .venv/bin/python scripts/hop_resilience_cost.py --calls 20000 --block 500

A benchmark, not a test. Loopback only, bounded by --calls.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

from bench.system.faultproxy import read_request  # noqa: E402
from shop.hops import HopClient, HopSettings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
          b'{"ok":true}')


def serve(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


def answer(conn: socket.socket) -> None:
    buffer = bytearray()
    with conn:
        while read_request(conn, buffer) is not None:
            conn.sendall(ANSWER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="per client")
    parser.add_argument("--block", type=int, default=500, help="calls per alternation")
    args = parser.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    clients = {"resilient (defaults)": HopClient(url, "cred"),
               "bare (no breaker, bulkhead, budget)": HopClient(
                   url, "cred", HopSettings(retries=0, breaker_failures=0, bulkhead_share=0))}
    took: dict[str, list[float]] = {name: [] for name in clients}
    for client in clients.values():  # warm the connections
        for _ in range(200):
            client.call("/x", {}, idempotent=True)
    for _ in range(args.calls // args.block):
        for name, client in clients.items():
            for _ in range(args.block):
                started = time.perf_counter_ns()
                client.call("/x", {}, idempotent=True)
                took[name].append((time.perf_counter_ns() - started) / 1000)
    for name, values in took.items():
        values.sort()
        print(f"{name:38s} p50 {statistics.median(values):7.1f} us   "
              f"p99 {values[int(len(values) * 0.99)]:7.1f} us   ({len(values)} calls)")
    p50 = [statistics.median(v) for v in took.values()]
    print(f"difference of the p50s: {p50[0] - p50[1]:.1f} us")


if __name__ == "__main__":
    main()
