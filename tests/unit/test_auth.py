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
