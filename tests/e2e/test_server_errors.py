"""Errors gunicorn answers itself (before Flask sees the request) keep the JSON contract."""
from __future__ import annotations

import json
import re
import socket
from contextlib import ExitStack

import pytest

from shop.address import address_of
from tests.placements import start


@pytest.fixture(scope="module")
def served():
    """Each placement started once for the module: name -> the running shop."""
    with ExitStack() as stack:
        started: dict[str, object] = {}

        def get(name: str):
            if name not in started:
                started[name] = start(name, stack)[1]
            return started[name]
        yield get


def raw(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` bytes as they are; the status, headers and body of the answer."""
    with socket.create_connection(address_of(base_url), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if sep and length and len(body) >= int(length.group(1)):
                break  # whole: a kept-alive connection (the edge's) would not close
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


BAD = [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431,
     "headers_too_large"),
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400, "bad_request"),
]


@pytest.mark.parametrize("placement", ["monolith", "microservices"])
def test_gunicorns_own_errors_are_json(served, placement):
    shop = served(placement)
    urls = {shop.base_url, *(p.url for p in shop.processes.values())}  # every server
    for url in sorted(urls):
        for request, status, code in BAD:
            got, headers, body = raw(url, request)
            assert got == status, (url, request[:40], got, body[:200])
            assert headers["content-type"] == "application/json"
            if url != shop.base_url or shop.edge is None:
                # gunicorn closes a stream it cannot trust; the edge parsed the request
                # itself, so its connection to the client stays usable
                assert headers["connection"] == "close"
            doc = json.loads(body)
            assert doc["error"] == code and isinstance(doc["detail"], str), doc
        assert raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200


def chunked(path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunks = b"".join(b"%x\r\n" % len(body[i:i + 65536]) + body[i:i + 65536] + b"\r\n"
                      for i in range(0, len(body), 65536))
    return head + chunks + b"0\r\n\r\n"


@pytest.mark.parametrize("placement", ["monolith", "microservices"])
def test_bodies_over_the_limit_get_a_readable_413(served, placement):
    """Finding 6: a chunked body over 1 MiB got 400 (werkzeug cut it at the limit and it was
    no longer JSON); a large body with Content-Length got its 413 and then a reset on a
    keep-alive connection, so the client never read it."""
    import requests

    shop = served(placement)
    big = b'{"username": "' + b"a" * 1_500_000 + b'", "password": "password1"}'
    status, _, body = raw(shop.base_url, chunked("/auth/register", big))
    assert status == 413 and json.loads(body)["error"] == "request_entity_too_large", body
    small = b'{"username": "' + b"a" * 100_000 + b'", "password": "password1"}'
    assert raw(shop.base_url, chunked("/auth/register", small))[0] == 422  # read in full
    session = requests.Session()
    for _ in range(3):  # 6 MiB, keep-alive: the 413 is read, the connection reused
        r = session.post(shop.base_url + "/auth/register", data=b"x" * (6 << 20),
                         headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 413 and r.json()["error"] == "request_entity_too_large"
    assert session.get(shop.base_url + "/healthz", timeout=10).status_code == 200
