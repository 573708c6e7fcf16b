import json
from dataclasses import asdict, replace

import pytest

from shop.auth.client import AuthClient
from shop.auth.service import AuthService
from shop.balance import ReplicaSet
from shop.events import DirectDelivery
from shop.placement import (Deployment, ProcessScale, Topology, TopologyError, build_process,
                            load_topology, parse_topology)
from shop.search.client import SearchClient
from shop.search.leaves import LeafService
from tests.placements import HYBRID_URLS, unit_deployment


def test_shipped_topologies_partition_all_components():
    for name in ("monolith", "microservices", "hybrid", "microservices-billing-x2"):
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
      "leaves": {"shards": 65}}, "[leaves] shards must be a whole number from 1 to 64, not 65"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"]}},
      "leaves": {"replica": 2}}, "[leaves]: unknown key(s) ['replica']"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"]}},
      "leaves": {"processes": "yes"}}, "[leaves] processes must be true or false"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"]}},
      "leaves": {"processes": True}}, "needs shard_calls = \"http\""),
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
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"], "replica": 2}}},
      "process 'a': unknown key(s) ['replica']; expected components, workers, threads, replicas"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"], "workers": 0}}},
      "process 'a': workers must be a whole number from 1 to 64, not 0"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"], "threads": "8"}}},
      "threads must be a whole number from 1 to 256, not '8'"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"], "replicas": True}}},
      "replicas must be a whole number from 1 to 16, not True"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"], "replicas": 17}}},
      "replicas must be a whole number from 1 to 16"),
    ({"process": {"a": {"components": ["auth", "billing", "search", "notify"], "replicas": 2}}},
      "process 'a': replicas need gateway = true"),
])
def test_bad_topologies_say_what_is_wrong(doc, needle):
    with pytest.raises(TopologyError) as err:
        parse_topology(doc, "t.toml")
    assert needle in str(err.value) and str(err.value).startswith("t.toml: ")


def test_unknown_name_and_bad_toml(tmp_path):
    with pytest.raises(TopologyError, match="known: hybrid, microservices, microservices-billing-x2, microservices-fanout, microservices-pg, microservices-rabbitmq, monolith, monolith-pg"):
        load_topology("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[process\n")
    with pytest.raises(TopologyError, match="not valid TOML"):
        load_topology(bad)


def test_deployment_round_trips_as_json(tmp_path):
    dep = unit_deployment(tmp_path, "hybrid", {"core": "http://127.0.0.1:1"})
    assert Deployment.from_json(dep.to_json()) == dep
    replicated = replace(unit_deployment(tmp_path, "microservices-billing-x2",
                                         {"billing": "http://127.0.0.1:1"}),
                         replica_urls={"billing": ["http://127.0.0.1:1", "http://127.0.0.1:2"]})
    assert Deployment.from_json(replicated.to_json()) == replicated
    assert replicated.urls_of("billing") == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert replicated.urls_of("billing")[0] == replicated.urls["billing"]


def test_a_process_table_may_scale_its_process(tmp_path):
    doc = {"gateway": True, "process": {
        "a": {"components": ["auth", "search"], "workers": 3, "threads": 2},
        "b": {"components": ["billing"], "replicas": 2},
        "c": {"components": ["notify"]}}}
    topo = parse_topology(doc, "t.toml")
    assert topo.scale == {"a": ProcessScale(workers=3, threads=2), "b": ProcessScale(replicas=2)}
    assert topo.scale_of("c") == ProcessScale()  # the launch's workers and threads, one replica
    stored = json.loads(json.dumps(asdict(topo)))  # as a run's manifest keeps it
    assert Topology.from_dict(stored) == topo
    del stored["scale"]  # a manifest written before processes were scaled
    assert Topology.from_dict(stored) == replace(topo, scale={})


def test_a_replicated_process_gets_a_balanced_hop_to_every_replica(tmp_path):
    urls = {p: f"http://127.0.0.1:{9000 + i}" for i, p in
            enumerate(["auth", "billing", "search", "notify"])}
    dep = replace(unit_deployment(tmp_path, "microservices-billing-x2", urls),
                  replica_urls={"billing": [urls["billing"], "http://127.0.0.1:9100"]})
    auth = build_process(dep, "auth")
    try:
        to_billing = auth.billing._hop
        assert isinstance(to_billing, ReplicaSet) and to_billing.name == "billing"
        assert [h.base_url for h in to_billing.replicas] == dep.urls_of("billing")
        assert to_billing in auth.hops  # closed with the process
    finally:
        auth.close()


def test_monolith_process_is_all_local_with_in_transaction_delivery(tmp_path):
    shop = build_process(unit_deployment(tmp_path, "monolith"), "app")
    try:
        assert isinstance(shop.auth, AuthService) and shop.relay is None
        assert isinstance(shop.billing._publisher, DirectDelivery)
        # leaf calls are function calls: every replica of every shard lives here
        assert all(isinstance(leaf, LeafService) for row in shop.scatter.leaves for leaf in row)
        assert shop.scatter.shards == 32 and len(shop.leaves) == 64
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
        assert len(search_side.leaves) == 64  # to the leaves here
    finally:
        search_side.close()
