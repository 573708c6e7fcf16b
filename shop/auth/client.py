"""Auth's client stub: the ``Auth`` interface over a hop."""
from __future__ import annotations

from shop.auth.api import Principal, Token
from shop.hops import HopClient


class AuthClient:
    def __init__(self, hop: HopClient) -> None:
        self._hop = hop

    def register(self, username: str, password: str) -> str:
        body = {"username": username, "password": password}
        return self._hop.call("/internal/auth/register", body, idempotent=False)["user_id"]

    def login(self, username: str, password: str) -> Token:
        body = {"username": username, "password": password}
        return Token(**self._hop.call("/internal/auth/login", body, idempotent=True))

    def verify(self, token: str) -> Principal:
        return Principal(**self._hop.call("/internal/auth/verify", {"token": token},
                                          idempotent=True))
