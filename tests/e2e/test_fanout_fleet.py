"""The real microservices-fanout placement, 64 leaf servers (32 shards x 2 replicas), started
once: the contract suite runs on a small fleet of the same shape (tests/placements.py), so
this checks what only the full size shows: every leaf server up, and a scatter over all 32
shards answering the same hits as the monolith's in-process scatter."""
from __future__ import annotations

from contextlib import ExitStack

from shop.placement import leaf_of, load_topology
from tests.contract.conftest import User
from tests.placements import start

QUERY = "/search/scatter?q=oak%20lamp&limit=50"


def test_the_64_leaf_fleet_answers_as_the_monolith_does():
    topology = load_topology("microservices-fanout")
    assert topology.leaves.shards * topology.leaves.replicas == 64
    with ExitStack() as stack:
        api, shop = start("microservices-fanout", stack)
        leaves = [name for name in shop.processes if leaf_of(name) is not None]
        assert len(leaves) == 64 and not shop.dead()
        split = User(api).call("GET", f"{QUERY}&n=32")
        hedged = User(api).call("GET", f"{QUERY}&n=32&hedge_ms=5000")
        reference = User(start("monolith-inprocess", stack)[0]).call("GET", f"{QUERY}&n=32")
    assert split[0] == reference[0] == 200, (split, reference)
    assert split[1]["shards"] == split[1]["of"] == reference[1]["of"] == 32
    assert split[1]["results"] == reference[1]["results"] and split[1]["results"]
    assert hedged[0] == 200 and hedged[1]["results"] == reference[1]["results"]
