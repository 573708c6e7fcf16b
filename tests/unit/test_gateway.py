from microservices.gateway import is_idempotent, owner_of, upstream_target


def test_public_paths_route_to_their_owner_and_internal_ones_nowhere():
    assert owner_of("/auth/login") == "auth" and owner_of("/auth/register") == "auth"
    assert owner_of("/search") == "search" and owner_of("/search/scatter") == "search"
    assert owner_of("/billing/orders/abc") == "billing" and owner_of("/notify/inbox") == "notify"
    for path in ("/internal/auth/verify", "/auth/verify", "/", "/searchx", "/metricsx"):
        assert owner_of(path) is None


def test_only_calls_safe_to_send_twice_are_idempotent():
    assert is_idempotent("GET", "/billing/balance", {})
    assert is_idempotent("POST", "/auth/login", {})
    assert is_idempotent("POST", "/billing/checkout", {"Idempotency-Key": "k"})
    assert not is_idempotent("POST", "/billing/checkout", {})
    assert not is_idempotent("POST", "/billing/topup", {})
    # top-up stores its result by key (tests/e2e/test_topup_kill.py), so a keyed one may be
    # resent; a header is not proof elsewhere: register stores nothing by key
    assert is_idempotent("POST", "/billing/topup", {"Idempotency-Key": "k"})
    assert not is_idempotent("POST", "/auth/register", {"Idempotency-Key": "k"})
    assert not is_idempotent("POST", "/auth/register", {})


def test_the_forwarded_target_is_escaped_again():
    assert upstream_target("/billing/orders/a b'c", b"") == "/billing/orders/a%20b'c"
    assert upstream_target("/search", b"q=oak%20lamp&limit=3") == "/search?q=oak%20lamp&limit=3"
    assert upstream_target("/search", "q=é x".encode("latin-1")) == "/search?q=%E9%20x"


def test_the_chain_starts_at_the_auth_process_and_its_links_stay_internal():
    assert owner_of("/chain") == "auth" and is_idempotent("GET", "/chain", {})
    for path in ("/chain/auth", "/internal/chain/auth", "/chainx"):
        assert owner_of(path) is None
