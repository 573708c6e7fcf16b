"""What the launcher starts for a scaled topology: one server per replica, each named, with
its own URL, and the workers and threads its process table sets (no server is started)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bench.system.launcher import (LaunchSettings, bind_listeners, new_deployment, process_names,
                                   process_settings, replica_name, split_name)
from shop.placement import Topology, load_topology, parse_topology


def test_replicas_are_servers_named_after_their_process():
    topo = load_topology("microservices-billing-x2")
    names = process_names(topo)
    assert names == ["auth", "billing", "billing#2", "search", "notify", "gateway"]
    assert [split_name(n) for n in names[1:3]] == [("billing", 0), ("billing", 1)]
    assert all(replica_name(*split_name(n)) == n for n in names)
    # Unreplicated topologies start exactly the servers they always did.
    assert process_names(load_topology("microservices")) == [
        "auth", "billing", "search", "notify", "gateway"]


def test_each_replica_gets_its_own_url_and_the_first_keeps_the_process_entry(tmp_path):
    topo = load_topology("microservices-billing-x2")
    listeners = bind_listeners(process_names(topo))
    try:
        dep = new_deployment(topo, tmp_path, LaunchSettings(), listeners)
    finally:
        for sock in listeners.values():
            sock.close()
    assert set(dep.urls) == {"auth", "billing", "search", "notify", "gateway"}
    assert list(dep.replica_urls) == ["billing"]
    first, second = dep.urls_of("billing")
    assert first == dep.urls["billing"] and second != first
    assert len(set(dep.urls.values()) | {second}) == 6  # every server on a port of its own
    assert dep.urls_of("auth") == [dep.urls["auth"]]


def test_a_process_table_overrides_the_launch_workers_and_threads():
    topo = parse_topology({"gateway": True, "process": {
        "a": {"components": ["auth", "search"], "workers": 3},
        "b": {"components": ["billing", "notify"], "threads": 2, "replicas": 2}}}, "t.toml")
    base = replace(LaunchSettings(), workers=2, threads=16)
    assert (process_settings(base, topo, "a").workers, process_settings(base, topo, "a").threads) == (3, 16)
    assert (process_settings(base, topo, "b").workers, process_settings(base, topo, "b").threads) == (2, 2)
    assert process_settings(base, topo, "gateway") == base


def test_run_compares_a_replicated_topology_with_its_baseline():
    """``seambench run --topology microservices --topology microservices-billing-x2``: the
    arguments parse (nothing is run), both placements get every step, and the manifest's
    record of the replicated one reads back with its replicas (the hops experiment does)."""
    from bench import run as lifecycle
    from bench.cli import _comparisons, cli

    ctx = cli.commands["run"].make_context(
        "run", ["--topology", "microservices", "--topology", "microservices-billing-x2"])
    placements = ctx.params["placements"]
    assert [t.name for t in placements] == ["microservices", "microservices-billing-x2"]
    config = lifecycle.RunConfig.build("smoke", placements, LaunchSettings(),
                                       lifecycle.cpu_plan({0, 1}))
    steps = lifecycle.plan_steps(config)
    assert {s.placement for s in steps} == {"microservices", "microservices-billing-x2"}
    assert sum(s.placement == "microservices" for s in steps) * 2 == len(steps)
    stored = json.loads(json.dumps(config.describe()))["topologies"][1]
    assert Topology.from_dict(stored) == placements[1]
    assert Topology.from_dict(stored).scale_of("billing").replicas == 2
    # With the monolith as the baseline, the replicas' own ratio is asked for by name.
    ctx = cli.commands["run"].make_context("run", [
        "--topology", "monolith", "--topology", "microservices",
        "--topology", "microservices-billing-x2", "--ratio", "microservices-billing-x2/microservices"])
    names = [t.name for t in ctx.params["placements"]]
    assert _comparisons(ctx.params["comparisons"], names) == (
        ("microservices-billing-x2", "microservices"),)


def test_leaf_servers_are_named_by_shard_and_replica_and_sized_by_the_leaves_table():
    topo = load_topology("microservices-fanout")
    names = process_names(topo)
    leaves = [n for n in names if n.startswith("leaf.")]
    assert len(leaves) == 64 and leaves[:3] == ["leaf.0.0", "leaf.0.1", "leaf.1.0"]
    assert names[-1] == "gateway"
    settings = process_settings(LaunchSettings(), topo, "leaf.5.1")
    assert (settings.workers, settings.threads) == (1, topo.leaves.threads)
    assert not [n for n in process_names(load_topology("microservices")) if n.startswith("leaf.")]


def test_fanout_measures_each_placement_in_its_own_shape():
    """The fan-out experiment asks for the split placement with leaf servers and for the
    monolith with function-call leaves, both with its injections; the run records them."""
    from bench import run as lifecycle
    from bench.experiments.fanout.experiment import SLOW_REPLICA, TAIL

    config = lifecycle.RunConfig.build(
        "smoke", [load_topology("monolith"), load_topology("microservices")], LaunchSettings(),
        lifecycle.CpuPlan(None, None, "test"), ("hops", "fanout"))
    variants = config.variants()
    assert set(variants) == {"fanout"}  # hops measures the placements as given
    mono, mono_launch = variants["fanout"]["monolith"]
    micro, micro_launch = variants["fanout"]["microservices"]
    assert not mono.leaves.processes and micro.leaves.processes
    assert micro.leaves.shards == mono.leaves.shards == 4 and micro.leaves.replicas == 2
    assert set(micro_launch.leaf_delays) == set(mono_launch.leaf_delays) == {TAIL, SLOW_REPLICA}
    recorded = json.loads(json.dumps(config.describe()))["variants"]["fanout"]
    assert recorded["microservices"]["topology"]["leaves"]["processes"] is True
    assert Topology.from_dict(recorded["microservices"]["topology"]) == micro


def test_the_journey_probe_rung_runs_in_its_first_trials_only():
    """quick: 12 trials at 60 req/s, the 120 req/s capacity probe in 4 of them (both
    placements each time); every other experiment keeps the profile's trials."""
    from bench import run as lifecycle
    config = lifecycle.RunConfig.build("quick", [load_topology("monolith"),
                                                 load_topology("microservices")],
                                       LaunchSettings(), lifecycle.cpu_plan({0, 1}))
    steps = lifecycle.plan_steps(config)
    journey = [s for s in steps if s.experiment == "journey"]
    assert sorted({s.trial for s in journey if s.rung.label == "r60"}) == list(range(12))
    assert sorted({s.trial for s in journey if s.rung.label == "r120"}) == [0, 1, 2, 3]
    assert len(journey) == (12 + 4) * 2
    assert {s.trial for s in steps if s.experiment == "fanout"} == {0, 1, 2}


@pytest.mark.parametrize("value", ["abc", 1.5, -3, 0, True])
def test_a_probe_trials_that_is_not_a_whole_number_of_at_least_1_is_refused(value):
    from bench.experiments import get
    with pytest.raises(ValueError, match="journey.probe_trials must be a whole number"):
        get("journey").settings("quick", {"probe_trials": value})
