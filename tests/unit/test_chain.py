import pytest

from shop.chain.api import CHAIN_ORDER, MAX_HOPS
from shop.chain.client import ChainClient
from shop.chain.service import LocalLink, next_component
from shop.errors import InvalidValue
from shop.placement import build_process
from tests.fakes import CountingLink
from tests.placements import HYBRID_URLS, unit_deployment

RING = ["auth", "billing", "search", "notify", "auth"]


def never(component: str):
    raise AssertionError(f"resolved {component!r} for a call that ends here")


def test_the_ring_wraps_from_notify_to_auth():
    assert [next_component(c) for c in CHAIN_ORDER] == ["billing", "search", "notify", "auth"]
    assert MAX_HOPS == 4 and RING == [*CHAIN_ORDER, CHAIN_ORDER[0]]


def test_zero_remaining_names_itself_and_resolves_nothing():
    assert LocalLink("search", never).forward(0) == ["search"]


def test_a_link_forwards_once_to_the_next_component_with_one_hop_less():
    fakes = {c: CountingLink(c) for c in CHAIN_ORDER}
    asked: list[str] = []

    def resolve(component: str):
        asked.append(component)
        return fakes[component]

    assert LocalLink("notify", resolve).forward(3) == ["notify", "auth+2"]
    assert asked == ["auth"] and fakes["auth"].calls == [2]
    assert all(not fakes[c].calls for c in ("billing", "search", "notify"))


@pytest.mark.parametrize("k", range(MAX_HOPS + 1))
def test_a_ring_of_local_links_walks_the_ring(k):
    links: dict = {}  # filled after the links are built: resolution is lazy
    links.update((c, LocalLink(c, links.__getitem__)) for c in CHAIN_ORDER)
    assert links["auth"].forward(k) == RING[:k + 1]


@pytest.mark.parametrize("remaining", [-1, MAX_HOPS + 1, 10**9])
def test_out_of_range_is_refused_before_forwarding(remaining):
    fake = CountingLink("billing")
    with pytest.raises(InvalidValue):
        LocalLink("auth", lambda c: fake).forward(remaining)
    assert fake.calls == []


def test_an_unknown_component_has_no_link():
    with pytest.raises(ValueError, match="unknown component 'cart'"):
        LocalLink("cart", never)


def test_monolith_chain_is_function_calls_only(tmp_path):
    shop = build_process(unit_deployment(tmp_path, "monolith"), "app")
    try:
        assert set(shop.links) == set(CHAIN_ORDER) and shop.hops == []
        assert all(isinstance(link, LocalLink) for link in shop.links.values())
        assert shop.links["auth"].forward(MAX_HOPS) == RING
    finally:
        shop.close()


def test_split_process_links_what_it_hosts_and_hops_to_the_rest(tmp_path):
    urls = HYBRID_URLS
    core = build_process(unit_deployment(tmp_path, "hybrid", urls), "core")
    try:
        assert set(core.links) == {"auth", "billing"}
        assert core.links["auth"].forward(1) == ["auth", "billing"]  # a function call
        to_search = core.links["billing"]._resolve("search")
        assert isinstance(to_search, ChainClient) and to_search._hop.base_url == urls["search"]
    finally:
        core.close()
    notify = build_process(unit_deployment(tmp_path, "hybrid", urls), "notify")
    try:
        back = notify.links["notify"]._resolve("auth")
        assert isinstance(back, ChainClient) and back._hop.base_url == urls["core"]
    finally:
        notify.close()
