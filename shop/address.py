"""``http://HOST:PORT``: the one parser of a process's address, for the shop and the harness."""
from __future__ import annotations

from urllib.parse import urlsplit


def address_of(url: str) -> tuple[str, int]:
    """``(host, port)`` of an ``http://HOST:PORT`` URL (a path or query after it is ignored;
    an IPv6 host loses its brackets). Raises ValueError for another scheme, no host, or a
    port that is missing, not a number or outside 1..65535."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number or out of range
        port = None
        parts = None
    if parts is None or parts.scheme != "http" or not parts.hostname or not port:
        raise ValueError(f"expected http://HOST:PORT, not {url!r}")
    return parts.hostname, port
