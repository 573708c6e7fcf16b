"""A keep-alive JSON client for the shop's public API, for set-up work outside the load
(registering an experiment's users before its load). Not used to measure anything."""
from __future__ import annotations

import http.client
import json
import os

from shop.address import address_of


class ShopClient:
    """A keep-alive JSON client for the public API (http.client: the cheapest honest client)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self._conn = http.client.HTTPConnection(*address_of(base_url), timeout=timeout_s)
        self.token = ""

    def reconnect(self) -> None:
        """Drop the connection; the next call opens a new one (the server may have closed an
        idle one while other placements were being measured)."""
        self._conn.close()

    def call(self, method: str, path: str, body: dict | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict]:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        payload = None if body is None else json.dumps(body)
        self._conn.request(method, path, body=payload, headers=all_headers)
        response = self._conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")

    def expect(self, status: int, method: str, path: str, body: dict | None = None,
               headers: dict[str, str] | None = None) -> dict:
        got, data = self.call(method, path, body, headers)
        if got != status:
            raise RuntimeError(f"{method} {path}: expected {status}, got {got}: {data}")
        return data

    def close(self) -> None:
        self._conn.close()


def funded_users(base_url: str, count: int) -> list[dict[str, str]]:
    """Register and fund ``count`` users; their credentials (set-up, not measured)."""
    users = []
    session = ShopClient(base_url)
    try:
        run = os.urandom(4).hex()
        for i in range(count):
            body = {"username": f"h{run}-{i}", "password": "harness-password"}
            session.token = ""
            session.expect(201, "POST", "/auth/register", body)
            session.token = session.expect(200, "POST", "/auth/login", body)["token"]
            for _ in range(4):
                session.expect(200, "POST", "/billing/topup", {"amount_cents": 10_000_000})
            users.append(body)
    finally:
        session.close()
    return users


def log_in(base_url: str, users: list[dict[str, str]]) -> list[str]:
    """A bearer token for each user."""
    session = ShopClient(base_url)
    try:
        return [session.expect(200, "POST", "/auth/login", body)["token"] for body in users]
    finally:
        session.close()
