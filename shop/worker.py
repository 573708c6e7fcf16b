"""The gunicorn worker every server runs: gthread, with gunicorn's own errors in the JSON contract.

A request gunicorn cannot parse (a request line or headers over its limits, a malformed
line, a bad chunk) never reaches Flask: gunicorn answers it itself, as an HTML page. The
shop's contract is ``{"error": "<code>", "detail": "<text>"}`` for every error, so this
worker answers those in that shape, with the status gunicorn would have used, and closes the
connection as gunicorn does (the stream cannot be trusted past a parse error).
"""
from __future__ import annotations

import json

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker

MAX_DETAIL = 200  # characters of gunicorn's message kept (it may quote the client's bytes)
# Parse errors whose status is not 400, most specific first: (class, status, reason, code).
STATUS = (
    (errors.LimitRequestLine, 414, "URI Too Long", "uri_too_long"),
    (errors.LimitRequestHeaders, 431, "Request Header Fields Too Large", "headers_too_large"),
    (errors.UnsupportedTransferCoding, 501, "Not Implemented", "not_implemented"),
    (errors.ExpectationFailed, 417, "Expectation Failed", "expectation_failed"),
    (errors.ForbiddenProxyRequest, 403, "Forbidden", "forbidden"),
    (errors.ConfigurationProblem, 500, "Internal Server Error", "internal"),
)
# What gunicorn itself counts as the application's fault, though it is a ParseException.
APPLICATION_FAULTS = (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName)


def error_of(exc: BaseException) -> tuple[int, str, str, str]:
    """(status, reason phrase, error code, detail) for an error gunicorn hands its worker."""
    if isinstance(exc, errors.ParseException) and not isinstance(exc, APPLICATION_FAULTS):
        for kind, status, reason, code in STATUS:
            if isinstance(exc, kind):
                return status, reason, code, str(exc)[:MAX_DETAIL]
        return 400, "Bad Request", "bad_request", str(exc)[:MAX_DETAIL]
    return 500, "Internal Server Error", "internal", "internal error"


def error_response(status: int, reason: str, code: str, detail: str) -> bytes:
    body = json.dumps({"error": code, "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class JsonErrorWorker(ThreadWorker):
    """gunicorn's gthread worker, answering its own errors as JSON."""

    def handle_error(self, req, client, addr, exc):  # gunicorn's signature
        status, reason, code, detail = error_of(exc)
        if status >= 500:
            self.log.exception("error handling a request")
        else:
            self.log.warning("invalid request from %s: %s", (addr or ("", -1))[0], detail)
        try:
            util.write_nonblock(client, error_response(status, reason, code, detail))
        except Exception:  # the client may be gone; nothing else to do for it
            self.log.debug("could not send the error response")
