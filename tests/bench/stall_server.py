"""A test server that answers its first N requests at once, then holds every later one.

Run as ``python tests/bench/stall_server.py N``; prints its port, then serves keep-alive
HTTP/1.1 on 127.0.0.1 until killed. Request N+1 and after never get an answer: a stalled
dependency whose requests neither finish nor fail within a load generator's drain.
"""
from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    answer_first = int(sys.argv[1])
    served = 0
    lock = threading.Lock()
    never = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            nonlocal served
            with lock:
                served += 1
                stalled = served > answer_first
            if stalled:
                never.wait()  # held until the process is killed
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
