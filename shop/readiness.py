"""Readiness: whether the processes this one calls are answering, for ``/readyz``.

A process is ready when every dependency answers ``GET /healthz`` (liveness: it never asks
a dependency of its own, so processes that call each other cannot wait on each other) within
a short timeout. A replicated dependency is up when any replica answers. The answer is
kept for ``cache_s`` so a readiness probe every few milliseconds costs a dependency little.
"""
from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from shop.address import address_of

PROBE_TIMEOUT_S = 0.5  # a paused dependency makes /readyz wait this long, not a read timeout
CACHE_S = 1.0


def answers(url: str, timeout_s: float, path: str = "/healthz") -> bool:
    """Whether ``url`` answers GET ``path`` with 200 within ``timeout_s``."""
    conn = http.client.HTTPConnection(*address_of(url), timeout=timeout_s)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Dependencies:
    """The processes one process calls, by name -> the base URL of each replica."""

    def __init__(self, urls: Mapping[str, Sequence[str]], timeout_s: float = PROBE_TIMEOUT_S,
                 cache_s: float = CACHE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._urls = {name: list(replicas) for name, replicas in urls.items()}
        self._timeout_s, self._cache_s, self._clock = timeout_s, cache_s, clock
        self._down: list[str] = []
        self._checked_at: float | None = None
        self._lock = threading.Lock()

    def down(self) -> list[str]:
        """The dependencies not answering now (at most ``cache_s`` old), in name order."""
        with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= self._cache_s:
                self._down = [name for name, replicas in sorted(self._urls.items())
                              if not any(answers(url, self._timeout_s) for url in replicas)]
                self._checked_at = self._clock()
            return list(self._down)
