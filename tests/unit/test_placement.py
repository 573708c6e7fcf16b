import pytest

from shop.auth.client import AuthClient
from shop.auth.service import AuthService
from shop.events import DirectDelivery
from shop.placement import (Deployment, TopologyError, build_process, load_topology,
                            parse_topology)
from shop.search.client import SearchClient
from tests.placements import HYBRID_URLS, unit_deployment


def test_shipped_topologies_partition_all_components():
    for name in ("monolith", "microservices", "hybrid"):
        topo = load_topology(name)
        hosted = sorted(c for comps in topo.processes.values() for c in comps)
        assert hosted == ["auth", "billing", "notify", "search"]
    mono = load_topology("monolith")
    assert not mono.gateway and len(set(mono.databases.values())) == 1
    micro = load_topology("microservices")
    assert micro.gateway and len(set(micro.databases.values())) == 4


@pytest.mark.parametrize("doc,needle", [
    ({}, "at least one [process"),
    ({"process": {"a": {"components": ["auth", "billing", "search"]}}}, "['notify'] are in no process"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify", "auth"]}}}, "both"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify", "cart"]}}}, "unknown component 'cart'"),
    ({"process": {"a": {"components": ["auth", "billing"]}, "b": {"components": ["search", "notify"]}},
      "gateway": False}, "needs gateway = true"),
    ({"process": {"Bad Name": {"components": ["auth"]}}}, "bad process name"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"]}},
      "database": {"auth": "../etc"}}, "plain name"),
    ({"process": {}, "extra": 1}, "unknown key"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"]}},
      "shard_calls": "grpc"}, "shard_calls must be"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"]}},
      "shard_calls": "http"}, "needs gateway = true"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"]}},
      "database": {"auth": "mysql://db/x"}}, "use sqlite:///PATH or postgresql://"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"]}},
      "database": {"auth": "postgresql://db/Bad-Name"}}, "database name must be"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"]}},
      "database": {"search": "postgresql://db/x"}}, "search must be SQLite"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"]}},
      "events": "kafka://x"}, "events must be"),
])
def test_bad_topologies_say_what_is_wrong(doc, needle):
    with pytest.raises(TopologyError) as err:
        parse_topology(doc, "t.toml")
    assert needle in str(err.value) and str(err.value).startswith("t.toml: ")


def test_unknown_name_and_bad_toml(tmp_path):
    with pytest.raises(TopologyError, match="known: hybrid, microservices, microservices-pg, microservices-rabbitmq, monolith, monolith-pg"):
        load_topology("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[process\n")
    with pytest.raises(TopologyError, match="not valid TOML"):
        load_topology(bad)


def test_deployment_round_trips_as_json(tmp_path):
    dep = unit_deployment(tmp_path, "hybrid", {"core": "http://127.0.0.1:1"})
    assert Deployment.from_json(dep.to_json()) == dep


def test_monolith_process_is_all_local_with_in_transaction_delivery(tmp_path):
    shop = build_process(unit_deployment(tmp_path, "monolith"), "app")
    try:
        assert isinstance(shop.auth, AuthService) and shop.relay is None
        assert isinstance(shop.billing._publisher, DirectDelivery)
        assert shop.scatter._search is shop.search  # shard calls are function calls
    finally:
        shop.close()


def test_split_process_gets_stubs_and_an_outbox_relay(tmp_path):
    urls = HYBRID_URLS
    shop = build_process(unit_deployment(tmp_path, "hybrid", urls), "core")
    try:
        assert isinstance(shop.auth, AuthService) and isinstance(shop.search, SearchClient)
        assert shop.relay is not None  # notify is elsewhere: outbox + relay
    finally:
        shop.close()
    search_side = build_process(unit_deployment(tmp_path, "hybrid", urls), "search")
    try:
        assert isinstance(search_side.auth, AuthClient)
        assert search_side.scatter is None  # split: the gateway scatters, over hops
    finally:
        search_side.close()
