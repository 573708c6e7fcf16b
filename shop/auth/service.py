"""Auth's implementation: users in its own tables, scrypt password hashes, HMAC tokens."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
import uuid
from dataclasses import dataclass

from shop.auth.api import (InvalidCredentials, InvalidToken, Principal, Token, TooManyAttempts,
                           UsernameTaken)
from shop.errors import InvalidValue
from shop.storage import Database, DuplicateKey

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS auth_users (
        user_id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL)""",
    # Failed logins in a row per username tried (known or not, so a wait does not tell
    # which names exist); a success removes the row.
    """CREATE TABLE IF NOT EXISTS auth_login_failures (
        username TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        locked_until REAL NOT NULL)""",
]

USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,32}")
BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
PASSWORD_LENGTH = (8, 128)
# A password guesser's pace: a username may fail this many logins in a row freely; each
# further failure makes its next attempt wait, 1 s doubling up to 15 min (so 20 guesses
# take about an hour, where 25 took 1.35 s). A legitimate user who mistypes a few times
# never waits; the benchmark logs in before it measures, never under load.
FREE_LOGIN_FAILURES = 5
FIRST_WAIT_S = 1.0
LONGEST_WAIT_S = 900.0


def login_wait_s(failures: int) -> float:
    """How long a username waits after ``failures`` failed logins in a row (s)."""
    if failures < FREE_LOGIN_FAILURES:
        return 0.0
    return min(LONGEST_WAIT_S, FIRST_WAIT_S * 2 ** (failures - FREE_LOGIN_FAILURES))


@dataclass(frozen=True)
class AuthSettings:
    """``secret`` signs tokens; ``scrypt_n`` is the KDF cost (a power of two: 2**14 is
    the interactive-login figure in the scrypt paper; tests use less)."""

    secret: bytes
    audience: str = "seambench"
    token_ttl_s: int = 3600
    scrypt_n: int = 2**14


class PasswordHasher:
    """scrypt with a per-user salt; the cost is stored in the hash so it can change."""

    def __init__(self, n: int) -> None:
        if n < 2 or n & (n - 1):
            raise ValueError(f"scrypt n must be a power of two >= 2, not {n}")
        self.n = n

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(16)
        digest = self._derive(password, salt, self.n)
        return f"scrypt${self.n}${_b64(salt)}${_b64(digest)}"

    def verify(self, password: str, stored: str) -> bool:
        scheme, n, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        return hmac.compare_digest(self._derive(password, _unb64(salt), int(n)), _unb64(digest))

    @staticmethod
    def _derive(password: str, salt: bytes, n: int) -> bytes:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=8, p=1,
                              maxmem=256 * n * 8 + 2**20, dklen=32)


class TokenSigner:
    """``base64url(payload).base64url(HMAC-SHA256(payload))``; payload has sub, usr, aud, exp."""

    def __init__(self, secret: bytes, audience: str) -> None:
        self._secret = secret
        self.audience = audience

    def sign(self, principal: Principal, expires_at: int) -> str:
        payload = json.dumps({"sub": principal.user_id, "usr": principal.username,
                              "aud": self.audience, "exp": expires_at},
                             separators=(",", ":"), sort_keys=True).encode()
        body = _b64(payload)
        return f"{body}.{_b64(self._mac(body))}"

    def verify(self, token: str, now: float) -> Principal:
        body, _, mac = token.partition(".")
        try:
            good = hmac.compare_digest(_unb64(mac), self._mac(body))
            claims = json.loads(_unb64(body)) if good else None
        except (ValueError, TypeError, RecursionError):
            raise InvalidToken("malformed token") from None
        if not isinstance(claims, dict):
            raise InvalidToken("bad signature")
        if claims.get("aud") != self.audience:
            raise InvalidToken("wrong or missing audience")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            raise InvalidToken("expired or missing expiry")
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("usr"), str):
            raise InvalidToken("missing subject")
        if not (_encodable(claims["sub"]) and _encodable(claims["usr"])):
            # JSON may escape a lone surrogate; no user has one, and it cannot be answered
            raise InvalidToken("subject is not valid Unicode")
        return Principal(user_id=claims["sub"], username=claims["usr"])

    def _mac(self, body: str) -> bytes:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).digest()


class AuthService:
    """The local implementation of ``Auth``."""

    def __init__(self, db: Database, settings: AuthSettings, clock=time.time) -> None:
        self._db = db
        self._settings = settings
        self._hasher = PasswordHasher(settings.scrypt_n)
        self._signer = TokenSigner(settings.secret, settings.audience)
        self._clock = clock
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def register(self, username: str, password: str) -> str:
        if not USERNAME.fullmatch(username):
            raise InvalidValue("username must be 3-32 characters of letters, digits, '_', '.', '-'")
        if not PASSWORD_LENGTH[0] <= len(password) <= PASSWORD_LENGTH[1]:
            raise InvalidValue("password must be 8-128 characters")
        user_id = uuid.uuid4().hex
        password_hash = self._hasher.hash(password)
        try:
            with self._db.transaction() as conn:
                conn.execute("INSERT INTO auth_users VALUES (?, ?, ?, ?)",
                             (user_id, username, password_hash, self._clock()))
        except DuplicateKey:
            raise UsernameTaken(f"username {username!r} is taken") from None
        return user_id

    def login(self, username: str, password: str) -> Token:
        if not USERNAME.fullmatch(username):  # no user can have it: nothing to look up, or count
            raise InvalidCredentials("unknown username or wrong password")
        now = self._clock()
        failed = self._db.query_one("SELECT failures, locked_until FROM auth_login_failures "
                                    "WHERE username = ?", (username,))
        if failed is not None and failed["locked_until"] > now:
            wait = failed["locked_until"] - now
            raise TooManyAttempts(f"{failed['failures']} failed logins in a row for this "
                                  f"username: try again in {math.ceil(wait)} s",
                                  retry_after_s=wait)
        row = self._db.query_one(
            "SELECT user_id, password_hash FROM auth_users WHERE username = ?", (username,))
        # An unknown name costs a hash too, so timing does not tell which names exist.
        stored = row["password_hash"] if row is not None else self._decoy
        if not self._hasher.verify(password, stored) or row is None:
            self._failed(username, now)
            raise InvalidCredentials("unknown username or wrong password")
        if failed is not None:
            with self._db.transaction() as conn:
                conn.execute("DELETE FROM auth_login_failures WHERE username = ?", (username,))
        expires_at = int(self._clock()) + self._settings.token_ttl_s
        token = self._signer.sign(Principal(row["user_id"], username), expires_at)
        return Token(token=token, expires_at=expires_at)

    def verify(self, token: str) -> Principal:
        return self._signer.verify(token, self._clock())

    def _failed(self, username: str, now: float) -> None:
        """Count a failed login of ``username`` (atomically: concurrent guesses all count)
        and set the wait it has earned."""
        with self._db.transaction() as conn:
            failures = conn.execute(
                "INSERT INTO auth_login_failures VALUES (?, 1, 0) ON CONFLICT (username) "
                "DO UPDATE SET failures = auth_login_failures.failures + 1 RETURNING failures",
                (username,)).fetchone()["failures"]
            wait = login_wait_s(failures)
            if wait:
                conn.execute("UPDATE auth_login_failures SET locked_until = ? WHERE username = ?",
                             (now + wait, username))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict unpadded base64url: only its alphabet, and only the one spelling ``_b64``
    writes. Python's decoder skips stray characters and ignores the unused low bits of the
    last one, so ``token + "...."`` or a flipped low bit would otherwise decode to the same
    MAC. Raises ValueError."""
    if not BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical base64url spelling")
    return data


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
