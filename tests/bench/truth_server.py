"""A test server with known behaviour: every Nth request is delayed by exactly M ms, and,
optionally, every request after the first H is held forever (a stalled dependency whose
requests neither finish nor fail within a load generator's drain), or (SERIAL = 1) the
delays are served one at a time, so an arrival rate over 1000/M per second builds a queue.

Run as ``python tests/bench/truth_server.py SLOW_EVERY SLOW_MS [HOLD_AFTER [SERIAL]]``; prints its
port, then serves keep-alive HTTP/1.1 on 127.0.0.1 until killed. Nagle is off (two small
writes would otherwise cost 40 ms with delayed ACKs). Tests start it with ``running``.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def running(slow_every: int, slow_ms: float, hold_after: int = 0, serial: bool = False
            ) -> Iterator[tuple[subprocess.Popen, str]]:
    """The server as a process of its own session, and its URL; killed (group) on exit."""
    proc = subprocess.Popen([sys.executable, __file__, str(slow_every), str(slow_ms), str(hold_after),
                             str(int(serial))],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port = int(proc.stdout.readline())
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def main() -> None:
    slow_every, slow_ms = int(sys.argv[1]), float(sys.argv[2])
    hold_after = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    serial = threading.Lock() if len(sys.argv) > 4 and sys.argv[4] == "1" else None
    counter = itertools.count(1)
    lock = threading.Lock()
    never = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            with lock:
                n = next(counter)
            if hold_after and n > hold_after:
                never.wait()  # held until the process is killed
            if slow_every and n % slow_every == 0:
                if serial is not None:
                    with serial:  # one at a time: the others wait their turn
                        time.sleep(slow_ms / 1000)
                else:
                    time.sleep(slow_ms / 1000)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # the default 5 drops SYNs in a pause: 1 s retransmits
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
