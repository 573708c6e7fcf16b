"""Seeded junk at every public endpoint: always a JSON answer, never a 5xx, in every placement.

Request lines stay under gunicorn's 4094-byte limit: past it gunicorn's parser answers 414
itself, before any app code runs, with its own plain-text body.
"""
from __future__ import annotations

import json
import random
import string
from urllib.parse import quote

CASES = 160
FIELDS = ["username", "password", "amount_cents", "items", "sku", "qty", "q", "token"]


def junk(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 10**40, rng.randint(-10**6, 10**6)])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e308, 3.0])
    if kind == 4:
        return "".join(rng.choice(string.printable + "éß漢\u0000") for _ in range(rng.randrange(40)))
    if kind == 5:
        return rng.choice(["SKU-000001", "SKU-999999", "", "lamp", "x" * 1000])
    if kind == 6:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7:
        return {"sku": junk(rng, depth + 1), "qty": junk(rng, depth + 1)}
    return {rng.choice(FIELDS): junk(rng, depth + 1) for _ in range(rng.randrange(4))}


def body(rng: random.Random) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    if choice == 1:
        return json.dumps(junk(rng)).encode()
    fields = {name: junk(rng) for name in rng.sample(FIELDS, rng.randrange(1, 4))}
    if choice == 2 and rng.random() < 0.5:
        fields["items"] = [junk(rng, 1) for _ in range(rng.randrange(3))]
    return json.dumps(fields).encode()


def query(rng: random.Random) -> str:
    params = [f"{rng.choice(['q', 'limit', 'n', 'x'])}={quote(str(junk(rng)))}"
              for _ in range(rng.randrange(4))]
    return ("?" + "&".join(params)) if params else ""


def test_junk_never_gets_a_5xx(api, user):
    rng = random.Random(1234)
    endpoints = [("POST", "/auth/register"), ("POST", "/auth/login"), ("GET", "/search"),
                 ("GET", "/search/scatter"), ("POST", "/billing/topup"),
                 ("POST", "/billing/checkout"), ("GET", "/billing/orders/"),
                 ("GET", "/notify/inbox"), ("GET", "/billing/balance")]
    for case in range(CASES):
        method, path = rng.choice(endpoints)
        if path.endswith("/"):
            path += quote(str(junk(rng)), safe="") or "x"
        headers = {}
        if rng.random() < 0.7:
            headers["Authorization"] = f"Bearer {user.token}"
        elif rng.random() < 0.5:
            headers["Authorization"] = rng.choice(["Bearer", "Bearer  ", "bearer x.y", "Token abc"])
        if rng.random() < 0.7:
            headers["Idempotency-Key"] = rng.choice(["k", "", "x" * 300, "é", f"key-{case}"])
        status, answer = api.call(method, path + (query(rng) if method == "GET" else ""),
                                  headers=headers, raw=body(rng) if method == "POST" else None)
        assert status < 500, (case, method, path, status, answer)
        assert isinstance(answer, dict), (case, method, path, status, answer)
        if status >= 400:
            assert set(answer) == {"error", "detail"}, answer
