"""Auth: register, log in, verify a bearer token."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shop.errors import Conflict, DomainError, Unauthorized


@dataclass(frozen=True)
class Token:
    token: str
    expires_at: int  # seconds since the epoch


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    user_id: str
    username: str


class UsernameTaken(Conflict):
    code = "username_taken"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class InvalidToken(Unauthorized):
    code = "invalid_token"


class TooManyAttempts(DomainError):
    """A username's failed logins in a row have earned it a wait (``retry_after_s``, the
    429's ``Retry-After``); until then its logins are refused unchecked, right password or
    not."""

    code = "too_many_attempts"
    status = 429

    def __init__(self, detail: str = "", *, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Auth(Protocol):
    def register(self, username: str, password: str) -> str:
        """Create a user and return its user id. Raises UsernameTaken, InvalidValue."""

    def login(self, username: str, password: str) -> Token:
        """Issue a signed, expiring token. Raises InvalidCredentials; TooManyAttempts while
        the username waits out its failed logins."""

    def verify(self, token: str) -> Principal:
        """The principal of a valid, unexpired token for this audience. Raises InvalidToken."""
