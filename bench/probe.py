"""A sequential checkout probe: one client, one request at a time, wall-clock per checkout.

This is the simple loop the shop issue asked for, not the harness: no open-loop schedule,
no load, no confidence intervals. It answers "what does one checkout cost, unloaded?".
"""
from __future__ import annotations

import http.client
import json
import time
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeResult:
    placement: str
    samples_us: list[float]  # one wall-clock latency per checkout, microseconds

    def percentile(self, q: float) -> float:
        """The q-th percentile (0 <= q <= 100) in µs, interpolating between order statistics."""
        ordered = sorted(self.samples_us)
        if not ordered:
            raise ValueError("no samples")
        rank = (len(ordered) - 1) * q / 100
        low = int(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)

    def summary(self) -> dict[str, float | int | str]:
        return {"placement": self.placement, "checkouts": len(self.samples_us),
                "p50_us": round(self.percentile(50), 1), "p90_us": round(self.percentile(90), 1),
                "p99_us": round(self.percentile(99), 1), "max_us": round(max(self.samples_us), 1)}


class ShopSession:
    """A keep-alive JSON client for the public API (http.client: the cheapest honest client)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self._conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
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


class CheckoutProbe:
    """One user of one placement, ready to time checkouts in blocks (so placements can be
    interleaved A B A B and machine drift hits both)."""

    def __init__(self, base_url: str, placement: str) -> None:
        self.result = ProbeResult(placement, [])
        self._session = ShopSession(base_url)
        user = f"probe-{uuid.uuid4().hex[:12]}"
        self._session.expect(201, "POST", "/auth/register", {"username": user, "password": "probe-pass"})
        self._session.token = self._session.expect(
            200, "POST", "/auth/login", {"username": user, "password": "probe-pass"})["token"]
        self._sku = self._session.expect(200, "GET", "/search?q=lamp&limit=1")["results"][0]["sku"]

    def measure(self, checkouts: int, warmup: int = 0) -> None:
        """Time ``checkouts`` sequential one-item checkouts after ``warmup`` untimed ones.

        The block starts on a fresh connection, opened by an untimed top-up."""
        self._session.reconnect()
        for i in range(warmup + checkouts):
            if i % 50 == 0:  # top-ups stay outside the timed region
                self._session.expect(200, "POST", "/billing/topup", {"amount_cents": 10_000_000})
            key = {"Idempotency-Key": uuid.uuid4().hex}
            body = {"items": [{"sku": self._sku, "qty": 1}]}
            start = time.perf_counter_ns()
            self._session.expect(201, "POST", "/billing/checkout", body, key)
            elapsed_us = (time.perf_counter_ns() - start) / 1000
            if i >= warmup:
                self.result.samples_us.append(elapsed_us)

    def close(self) -> None:
        self._session.close()
