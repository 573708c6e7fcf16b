"""The one ``http://HOST:PORT`` parser (shop/address.py)."""
from __future__ import annotations

import pytest

from shop.address import address_of


@pytest.mark.parametrize("url,expected", [
    ("http://127.0.0.1:8000", ("127.0.0.1", 8000)),
    ("http://127.0.0.1:8000/", ("127.0.0.1", 8000)),
    ("http://127.0.0.1:8000/nested?x=1", ("127.0.0.1", 8000)),
    ("http://localhost:1", ("localhost", 1)),
    ("http://[::1]:65535", ("::1", 65535)),
])
def test_host_and_port(url, expected):
    assert address_of(url) == expected


@pytest.mark.parametrize("url", [
    "127.0.0.1:8000",  # no scheme
    "https://127.0.0.1:8000",  # not what the hops and the harness speak
    "http://127.0.0.1",  # no port
    "http://127.0.0.1:",  # empty port
    "http://127.0.0.1:0",
    "http://127.0.0.1:65536",
    "http://127.0.0.1:http",
    "http://:8000",  # no host
    "",
])
def test_anything_else_is_a_value_error(url):
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        address_of(url)
