"""The hop chain the benchmark prices one component call with, against every placement."""
from __future__ import annotations

import pytest

from shop.chain.api import CHAIN_ORDER, MAX_HOPS
from shop.chain.service import next_component
from shop.hops import SERVICE_HEADER
from tests.contract.test_shop_contract import assert_error
from tests.placements import HttpApi, topology_of

RING = [*CHAIN_ORDER, CHAIN_ORDER[0]]


@pytest.mark.parametrize("k", range(MAX_HOPS + 1))
def test_the_chain_walks_the_ring(user, k):
    assert user.call("GET", f"/chain?k={k}") == (200, {"path": RING[:k + 1], "hops": k})


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"},
                                     {SERVICE_HEADER: "guess"}])
def test_the_chain_needs_a_bearer_token_like_the_rest_of_the_api(api, headers):
    assert_error(api.call("GET", "/chain?k=1", headers=headers), 401)


@pytest.mark.parametrize("query,status", [
    ("", 400), ("?k=", 400), ("?k=x", 400), ("?k=1.5", 400), ("?n=2", 400),
    ("?k=-1", 422), (f"?k={MAX_HOPS + 1}", 422), ("?k=99999999999999999999999", 422)])
def test_bad_chain_lengths(user, query, status):
    assert_error(user.call("GET", "/chain" + query), status)


def test_the_chain_is_get_only(user):
    assert_error(user.call("POST", "/chain?k=1", {}), 405)


def test_the_internal_link_route_is_not_public(placement):
    """Through the public address: unknown at a gateway, forbidden without the credential."""
    name, api, _ = placement
    split = topology_of(name).gateway
    for headers in ({}, {SERVICE_HEADER: "guess"}):
        assert_error(api.call("POST", "/internal/chain/auth", {"remaining": 1}, headers),
                     404 if split else 403)


def processes(placement):
    """(hosted components, Api straight to that process, the service credential) for each."""
    name, api, shop = placement
    if shop is None:  # in-process monolith (tests/placements.py builds it with "cred")
        return [(CHAIN_ORDER, api, "cred")]
    dep = shop.deployment
    return [(hosted, HttpApi(dep.urls[proc]), dep.service_credential)
            for proc, hosted in dep.topology.processes.items()]


def test_each_process_serves_the_links_it_hosts_and_only_those(placement, user):
    token = user.token
    for hosted, proc, credential in processes(placement):
        service = {SERVICE_HEADER: credential}
        for comp in CHAIN_ORDER:
            result = proc.call("POST", f"/internal/chain/{comp}", {"remaining": 1}, service)
            if comp in hosted:
                assert result == (200, {"path": [comp, next_component(comp)]}), (hosted, comp)
                assert_error(proc.call("POST", f"/internal/chain/{comp}", {"remaining": 1}), 403)
                assert_error(proc.call("POST", f"/internal/chain/{comp}", {"remaining": 1},
                                       {SERVICE_HEADER: "guess"}), 403)
                assert_error(proc.call("POST", f"/internal/chain/{comp}", {"remaining": "1"},
                                       service), 400)
                assert_error(proc.call("POST", f"/internal/chain/{comp}",
                                       {"remaining": MAX_HOPS + 1}, service), 422)
            else:
                assert_error(result, 404)
        assert_error(proc.call("POST", "/internal/chain/cart", {"remaining": 0}, service), 404)
        public = proc.call("GET", "/chain?k=0", headers={"Authorization": f"Bearer {token}"})
        if CHAIN_ORDER[0] in hosted:
            assert public == (200, {"path": [CHAIN_ORDER[0]], "hops": 0})
        else:
            assert_error(public, 404)
