import pytest

from shop.auth.api import InvalidCredentials, InvalidToken, Principal, UsernameTaken
from shop.auth.service import SCHEMA, AuthService, AuthSettings, PasswordHasher, TokenSigner
from shop.errors import InvalidValue


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(db, clock) -> AuthService:
    db.apply_schema(SCHEMA)
    return AuthService(db, AuthSettings(b"k" * 32, token_ttl_s=60, scrypt_n=16), clock)


def test_register_login_verify(auth):
    user_id = auth.register("alice", "correct horse")
    token = auth.login("alice", "correct horse")
    assert auth.verify(token.token) == Principal(user_id, "alice")
    assert token.expires_at == 1_000_060


def test_duplicate_username_is_taken(auth):
    auth.register("alice", "correct horse")
    with pytest.raises(UsernameTaken):
        auth.register("alice", "another pass")


@pytest.mark.parametrize("username,password", [("al", "long enough"), ("bad name", "long enough"),
                                               ("x" * 33, "long enough"), ("alice", "short"),
                                               ("alice", "p" * 129)])
def test_invalid_registration_is_refused(auth, username, password):
    with pytest.raises(InvalidValue):
        auth.register(username, password)


def test_wrong_password_and_unknown_user_look_the_same(auth):
    auth.register("alice", "correct horse")
    with pytest.raises(InvalidCredentials):
        auth.login("alice", "wrong horse")
    with pytest.raises(InvalidCredentials):
        auth.login("bob", "correct horse")


def test_token_expires(auth, clock):
    auth.register("alice", "correct horse")
    token = auth.login("alice", "correct horse").token
    clock.now += 61
    with pytest.raises(InvalidToken):
        auth.verify(token)


def test_tampered_token_and_other_audience_are_refused(auth):
    auth.register("alice", "correct horse")
    token = auth.login("alice", "correct horse").token
    body, mac = token.split(".")
    with pytest.raises(InvalidToken):
        auth.verify(body[:-2] + "AA." + mac)
    other = TokenSigner(b"k" * 32, "another-audience").sign(Principal("u", "alice"), 2_000_000)
    with pytest.raises(InvalidToken):
        auth.verify(other)
    for junk in ["", ".", "abc", "a.b.c", "!!!.???"]:
        with pytest.raises(InvalidToken):
            auth.verify(junk)


def test_password_hash_is_salted_and_records_its_cost():
    hasher = PasswordHasher(16)
    first, second = hasher.hash("pw123456"), hasher.hash("pw123456")
    assert first != second and first.startswith("scrypt$16$")
    assert PasswordHasher(32).verify("pw123456", first)  # cost read from the hash, not the hasher
    assert not hasher.verify("pw1234567", first)
    with pytest.raises(ValueError):
        PasswordHasher(3)


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_a_token_has_one_spelling(auth):
    """Python's base64 decoder skips stray characters and ignores the unused low bits of the
    last character: each of these decodes to the genuine MAC, and each must be refused."""
    auth.register("alice", "correct horse")
    token = auth.login("alice", "correct horse").token
    body, mac = token.split(".")
    assert len(mac) % 4 == 3  # 32 bytes: the last character carries 2 unused low bits
    last = B64URL.index(mac[-1])
    same_bytes = [mac[:-1] + B64URL[last ^ bit] for bit in (1, 2, 3)]
    for forged in [token + "....", token + "!!!!", token + "=", token + "==", token + " ",
                   body + ".\n" + mac, *(f"{body}.{m}" for m in same_bytes)]:
        with pytest.raises(InvalidToken):
            auth.verify(forged)
    assert auth.verify(token).username == "alice"


@pytest.mark.parametrize("principal", [Principal("\ud800", "alice"), Principal("u", "al\udfffice")])
def test_a_signed_subject_that_is_not_unicode_is_refused(auth, principal):
    """JSON can carry a lone surrogate as an escape; answering with it would be a 500."""
    token = TokenSigner(b"k" * 32, "seambench").sign(principal, 2_000_000)
    with pytest.raises(InvalidToken, match="not valid Unicode"):
        auth.verify(token)


def test_a_deeply_nested_signed_payload_is_a_malformed_token(auth):
    import base64
    import hashlib
    import hmac
    body = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).rstrip(b"=").decode()
    mac = base64.urlsafe_b64encode(hmac.new(b"k" * 32, body.encode(), hashlib.sha256).digest())
    with pytest.raises(InvalidToken, match="malformed"):
        auth.verify(f"{body}.{mac.rstrip(b'=').decode()}")


def test_failed_logins_in_a_row_make_a_username_wait(auth, clock):
    from shop.auth.api import TooManyAttempts
    from shop.auth.service import FREE_LOGIN_FAILURES, login_wait_s
    auth.register("alice", "correct horse")
    for _ in range(FREE_LOGIN_FAILURES - 1):  # a user who mistypes a few times never waits
        with pytest.raises(InvalidCredentials):
            auth.login("alice", "wrong guess")
    assert auth.login("alice", "correct horse").token  # and a success forgets them
    for _ in range(FREE_LOGIN_FAILURES):
        with pytest.raises(InvalidCredentials):
            auth.login("alice", "wrong guess")
    with pytest.raises(TooManyAttempts) as refused:  # even the right password waits
        auth.login("alice", "correct horse")
    assert refused.value.retry_after_s == pytest.approx(login_wait_s(FREE_LOGIN_FAILURES))
    clock.now += login_wait_s(FREE_LOGIN_FAILURES)
    with pytest.raises(InvalidCredentials):  # one more failure doubles the wait
        auth.login("alice", "wrong again")
    with pytest.raises(TooManyAttempts) as refused:
        auth.login("alice", "correct horse")
    assert refused.value.retry_after_s == pytest.approx(2 * login_wait_s(FREE_LOGIN_FAILURES))
    clock.now += 2 * login_wait_s(FREE_LOGIN_FAILURES)
    assert auth.login("alice", "correct horse").token
    with pytest.raises(InvalidCredentials):  # the count started again
        auth.login("alice", "wrong guess")
    assert auth.login("alice", "correct horse").token


def test_an_unknown_username_waits_like_a_known_one(auth):
    """A wait must not tell a guesser which names exist."""
    from shop.auth.api import TooManyAttempts
    from shop.auth.service import FREE_LOGIN_FAILURES
    auth.register("alice", "correct horse")
    for name in ("alice", "nobody"):
        for _ in range(FREE_LOGIN_FAILURES):
            with pytest.raises(InvalidCredentials):
                auth.login(name, "wrong guess")
        with pytest.raises(TooManyAttempts):
            auth.login(name, "wrong guess")


def test_the_wait_doubles_and_is_capped():
    from shop.auth.service import FREE_LOGIN_FAILURES, LONGEST_WAIT_S, login_wait_s
    assert login_wait_s(FREE_LOGIN_FAILURES - 1) == 0
    assert login_wait_s(FREE_LOGIN_FAILURES + 1) == 2 * login_wait_s(FREE_LOGIN_FAILURES)
    assert login_wait_s(FREE_LOGIN_FAILURES + 50) == LONGEST_WAIT_S
