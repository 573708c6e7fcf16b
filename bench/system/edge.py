"""What sits at the shop's public edge: nginx as a buffering reverse proxy, or nothing.

gunicorn's gthread worker gives a thread to a connection as soon as its first bytes arrive
and then reads the request with no deadline, so a few clients that send half a request (or
headers, or a body, that never end) hold every thread and the shop stops answering anyone.
gunicorn's documentation asks for a buffering proxy in front of it for exactly this case.
With ``nginx`` the launcher starts one in front of the public process of every placement
alike (the monolith or the gateway): it reads each request whole, with deadlines, before
passing it on over kept-alive connections, so the shop's threads only ever see complete
requests. Its cost is one more loopback round trip per public request, the same in every
placement (docs/the-shop.md, "What sits at the edge").

``auto`` (the default) is nginx when the machine has it, else none; the run records which.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

EDGES = ("auto", "nginx", "none")
NGINX_ENV = "SEAMBENCH_NGINX"  # the nginx binary to use, instead of the one on the PATH
NGINX_PLACES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
# Deadlines nginx gives a client (s): the whole request head, then each read of the body
# and each write of the response. A slow client is cut off after these, and meanwhile it
# costs nginx a little memory, not a thread of the shop.
CLIENT_TIMEOUT_S = 10
# How long nginx waits for the shop's answer (s): longer than any request the experiments
# make (a slow leaf, a hop's retries), so the edge never decides a request's outcome.
UPSTREAM_TIMEOUT_S = 120
# Idle kept-alive connections to the shop are dropped before gunicorn's own keep-alive
# (LaunchSettings.keep_alive_s, 30 s) would close them under nginx's feet.
UPSTREAM_IDLE_S = 20
HEAD_BUFFER = "16k"
MAX_BODY = "10m"  # the shop's own limits are smaller: it answers an oversized body itself
# Errors nginx answers itself, in the shop's JSON contract {"error": code, "detail": text}:
# nginx's status -> (the status answered, code, detail). Answered as gunicorn would (431 for
# headers too large, where nginx says 400; 400 for an HTTP version it does not speak).
ERRORS = {400: (400, "bad_request", "the edge could not parse the request"),
          408: (408, "request_timeout", "the request did not arrive in time"),
          413: (413, "request_entity_too_large", "the request body is too large"),
          414: (414, "uri_too_long", "the request line is too long"),
          494: (431, "headers_too_large", "the request headers are too large"),
          502: (502, "bad_gateway", "the edge could not reach the shop"),
          503: (503, "unavailable", "the edge has no connection to the shop"),
          504: (504, "gateway_timeout", "the shop did not answer in time"),
          505: (400, "bad_request", "an HTTP version the edge does not speak")}
ERROR_PAGE = "/.seambench-edge/"  # internal locations: no request can name them
# nginx answers TRACE itself with 405: the shop's JSON, and the Allow header RFC 9110 asks
# for, naming what the shop's own 405 names for that path
METHOD_NOT_ALLOWED = (405, "method_not_allowed", "the method is not allowed for the requested URL")


def allow_map() -> dict[str, str]:
    """An nginx regex over the request target of each public path -> its Allow header."""
    from shop.openapi import allowed_methods, openapi_document, path_regex
    return {f"~^{path_regex(path)}(\\?|$)": allow
            for path, allow in allowed_methods(openapi_document()).items()}


class EdgeError(RuntimeError):
    """An edge that was asked for and cannot be had (``nginx`` on a machine without it)."""


@dataclass(frozen=True)
class Edge:
    """A resolved edge: ``kind`` is ``nginx`` or ``none``; ``binary`` and ``version`` for nginx."""

    kind: str
    binary: str = ""
    version: str = ""

    def describe(self) -> str:
        if self.kind == "nginx":
            return (f"nginx {self.version} (a buffering reverse proxy in front of the public "
                    f"process of every placement)")
        return "none: gunicorn faces clients itself (slow clients can hold its threads)"


def find_nginx() -> str | None:
    """The nginx binary: $SEAMBENCH_NGINX, else on the PATH, else where Debian puts it."""
    named = os.environ.get(NGINX_ENV)
    if named:
        return named if os.access(named, os.X_OK) else None
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in NGINX_PLACES if os.access(p, os.X_OK)), None)


def nginx_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise EdgeError(f"nginx at {binary} does not run: {exc}") from None
    match = re.search(r"nginx/(\S+)", done.stderr + done.stdout)
    if not match:
        raise EdgeError(f"nginx at {binary} does not say its version: {done.stderr.strip()!r}")
    return match.group(1)


def resolve_edge(choice: str) -> Edge:
    """The edge ``choice`` (one of EDGES) means on this machine. Raises EdgeError for
    ``nginx`` without nginx, ValueError for an unknown choice."""
    if choice not in EDGES:
        raise ValueError(f"edge must be one of {', '.join(EDGES)}, not {choice!r}")
    if choice == "none":
        return Edge("none")
    binary = find_nginx()
    if binary is None:
        if choice == "auto":
            return Edge("none")
        raise EdgeError("the edge 'nginx' needs nginx: install it (Debian: apt-get install "
                        f"nginx-light) or name its binary in ${NGINX_ENV}")
    return Edge("nginx", binary, nginx_version(binary))


def nginx_config(listen_port: int, upstream: str, run_dir: Path) -> str:
    """The configuration of one edge: listen on 127.0.0.1:``listen_port``, pass every request
    to ``upstream`` (``host:port``), keep everything it writes under ``run_dir``. One
    worker process, no master: it is the process the launcher starts and stops."""
    # URI error pages, not named locations: nginx cannot redirect a request whose line it
    # could not read (414) to a named location.
    pages = "\n".join(
        f"        error_page {status} ={answer} {ERROR_PAGE}{status};\n"
        f"        location = {ERROR_PAGE}{status} {{ internal; default_type application/json; "
        f"{'add_header Allow $seambench_allow always; ' if status == 405 else ''}"
        f"return {answer} '{{\"error\": \"{code}\", \"detail\": \"{detail}\"}}'; }}"
        for status, (answer, code, detail) in {**ERRORS, 405: METHOD_NOT_ALLOWED}.items())
    allow = "\n".join(f'        "{pattern}" "{methods}";'
                      for pattern, methods in allow_map().items())
    temp = "\n".join(f"    {kind}_temp_path {run_dir / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {run_dir / 'nginx.pid'};
error_log {run_dir / 'error.log'} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
{temp}
    client_header_timeout {CLIENT_TIMEOUT_S}s;
    client_body_timeout {CLIENT_TIMEOUT_S}s;
    send_timeout {CLIENT_TIMEOUT_S}s;
    client_max_body_size {MAX_BODY};
    # Room for longer heads than gunicorn takes (a 4094-byte request line, 8190-byte header
    # fields), so the shop's own 414 and 431 answer them, as without the edge.
    large_client_header_buffers 4 {HEAD_BUFFER};
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    map $request_uri $seambench_allow {{
        default "";
{allow}
    }}
    upstream shop {{
        server {upstream};
        keepalive 64;
        keepalive_timeout {UPSTREAM_IDLE_S}s;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://shop;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_request_buffering on;
            proxy_buffering on;
            proxy_intercept_errors off;
            proxy_next_upstream off;
            proxy_connect_timeout 5s;
            proxy_send_timeout {UPSTREAM_TIMEOUT_S}s;
            proxy_read_timeout {UPSTREAM_TIMEOUT_S}s;
        }}
{pages}
    }}
}}
"""


def nginx_command(edge: Edge, config_path: Path) -> list[str]:
    """The command that runs ``edge`` (nginx) with ``config_path``, in the foreground."""
    return [edge.binary, "-c", str(config_path), "-p", str(config_path.parent),
            "-e", str(config_path.parent / "error.log")]
