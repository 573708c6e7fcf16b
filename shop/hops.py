"""The one HTTP hop every client stub uses: the thing a seam adds, so it is kept lean.

- Pooled keep-alive connections (urllib3), safe to share across gunicorn's gthread threads:
  a connection is checked out by one thread at a time, and one found dropped by the server
  is replaced before use.
- Explicit connect and read timeouts; a connection that cannot be made is ``Unavailable``.
- A pooled connection the server closed just as we reused it (keep-alive timeout race)
  surfaces as a reset or a disconnect with no response. An *idempotent* call is then retried
  on another connection; a non-idempotent one is not, because the server may have acted.
  Timeouts are never retried: that would multiply a slow dependency's latency.
- JSON errors are mapped back to the domain error the remote side raised.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, ProtocolError, TimeoutError
from urllib3 import BaseHTTPResponse
from urllib3.util import Retry, parse_url

from shop.errors import DomainError, RemoteError, Unavailable

SERVICE_HEADER = "X-Seambench-Service"


@dataclass(frozen=True)
class HopSettings:
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 10.0
    pool_size: int = 32  # connections kept per destination process
    reset_retries: int = 2  # extra attempts of an idempotent call after a dropped connection


class HopClient:
    """JSON-over-HTTP calls to one destination process."""

    def __init__(self, base_url: str, credential: str, settings: HopSettings = HopSettings()) -> None:
        url = parse_url(base_url)
        if url.scheme != "http" or not url.host or not url.port:
            raise ValueError(f"hop destination must be http://HOST:PORT, not {base_url!r}")
        self.base_url = base_url
        self._settings = settings
        self._pool = urllib3.HTTPConnectionPool(
            url.host, url.port, maxsize=settings.pool_size, block=False,
            timeout=urllib3.Timeout(connect=settings.connect_timeout_s,
                                    read=settings.read_timeout_s))
        self._headers = {"Content-Type": "application/json", SERVICE_HEADER: credential}
        # Connection failures are always safe to retry (nothing was sent); nothing else here.
        self._retry = Retry(total=None, connect=2, read=False, status=0, other=0, redirect=0,
                            raise_on_redirect=False, raise_on_status=False,
                            respect_retry_after_header=False)

    def call(self, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """POST ``body`` to ``path``; the JSON response, or the remote side's DomainError."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        response = self.send("POST", path, payload, self._headers, idempotent=idempotent)
        try:
            data = json.loads(response.data)
        except ValueError:
            raise RemoteError(f"{self.base_url}{path}: HTTP {response.status}, not JSON") from None
        if response.status >= 400:
            raise DomainError.from_json(response.status, data)
        return data

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str], *,
             idempotent: bool) -> BaseHTTPResponse:
        """One request, its body read in full. Raises Unavailable when no answer came."""
        attempts = 1 + (self._settings.reset_retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                return self._pool.urlopen(method, path, body=body, headers=headers,
                                          retries=self._retry, redirect=False)
            except ProtocolError as exc:  # reset / disconnected without a response
                if attempt + 1 == attempts:
                    raise Unavailable(f"{self.base_url}{path}: connection dropped: {exc}") from exc
            except (MaxRetryError, TimeoutError, HTTPError, OSError) as exc:
                raise Unavailable(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.close()
