from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from tests.placements import PLACEMENTS, Api, start


class Placements:
    """Placements started on first use and kept until ``close``, which stops them all at
    once (each fleet waits for its workers to finish: one after another, that adds up)."""

    def __init__(self) -> None:
        self._stacks: dict[str, ExitStack] = {}
        self._started: dict[str, tuple] = {}

    def get(self, name: str) -> tuple[Api, object]:
        if name not in self._started:
            self._stacks[name] = ExitStack()
            self._started[name] = start(name, self._stacks[name])
        return self._started[name]

    def close(self) -> None:
        with ThreadPoolExecutor(max_workers=max(1, len(self._stacks))) as pool:
            list(pool.map(ExitStack.close, self._stacks.values()))


@pytest.fixture(scope="package")
def placements():
    """Started on first use, stopped when the contract package is done: idle fleets would
    otherwise poll their outboxes through every later test."""
    started = Placements()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="package", params=PLACEMENTS)
def placement(request, placements):
    """(name, Api, running shop or None) for each placement in turn."""
    api, shop = placements.get(request.param)
    return request.param, api, shop


@pytest.fixture
def api(placement) -> Api:
    return placement[1]


class User:
    """A registered, logged-in user of ``api``."""

    def __init__(self, api: Api, prefix: str = "u") -> None:
        self.api = api
        self.username = f"{prefix}{uuid.uuid4().hex[:12]}"
        status, body = api.call("POST", "/auth/register",
                                {"username": self.username, "password": "secret-pass"})
        assert status == 201, body
        self.user_id = body["user_id"]
        status, body = api.call("POST", "/auth/login",
                                {"username": self.username, "password": "secret-pass"})
        assert status == 200, body
        self.token = body["token"]

    def call(self, method, path, body=None, headers=None, raw=None):
        return self.api.call(method, path, body,
                             {"Authorization": f"Bearer {self.token}", **(headers or {})}, raw)

    def checkout(self, items, key=None):
        return self.call("POST", "/billing/checkout", {"items": items},
                         {"Idempotency-Key": key or uuid.uuid4().hex})


@pytest.fixture
def user(api) -> User:
    return User(api)


@pytest.fixture
def other_user(api) -> User:
    return User(api)


@pytest.fixture
def sku(user) -> tuple[str, int]:
    """A real SKU and its price, found through search."""
    status, body = user.call("GET", "/search?q=lamp&limit=1")
    assert status == 200
    return body["results"][0]["sku"], body["results"][0]["price_cents"]
