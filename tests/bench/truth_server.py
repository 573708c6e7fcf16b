"""A test server with a known latency mixture: every Nth request is delayed by exactly M ms.

Run as ``python tests/bench/truth_server.py SLOW_EVERY SLOW_MS``; prints its port, then
serves keep-alive HTTP/1.1 on 127.0.0.1 until killed. Nagle is off (two small writes would
otherwise cost 40 ms with delayed ACKs).
"""
from __future__ import annotations

import itertools
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    slow_every, slow_ms = int(sys.argv[1]), float(sys.argv[2])
    counter = itertools.count(1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            with lock:
                n = next(counter)
            if slow_every and n % slow_every == 0:
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
