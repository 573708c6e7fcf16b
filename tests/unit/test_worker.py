"""The worker's mapping of gunicorn's errors to the JSON contract (no server started)."""
from __future__ import annotations

import json

from gunicorn.http import errors

from shop.worker import error_of, error_response


def test_parse_errors_keep_gunicorns_status_and_anything_else_is_a_500():
    assert error_of(errors.LimitRequestLine(9000, 4094))[:3] == (414, "URI Too Long", "uri_too_long")
    assert error_of(errors.LimitRequestHeaders("too big"))[0] == 431
    assert error_of(errors.InvalidRequestLine("GARBAGE"))[:3] == (400, "Bad Request", "bad_request")
    assert error_of(errors.InvalidResponseHeaderName("x"))[0] == 500  # the application's fault
    status, _, code, detail = error_of(RuntimeError("secret internals"))
    assert (status, code, detail) == (500, "internal", "internal error")  # nothing leaks
    assert len(error_of(errors.InvalidHeader("x" * 10_000))[3]) <= 200


def test_the_response_is_json_and_closes():
    raw = error_response(414, "URI Too Long", "uri_too_long", 'quote " and <tag>')
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long\r\n") and b"Connection: close" in head
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) == len(body)
    assert json.loads(body) == {"error": "uri_too_long", "detail": 'quote " and <tag>'}
