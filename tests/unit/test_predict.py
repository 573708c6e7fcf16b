"""The seam model's arithmetic (bench/experiments/predict/model.py) and how a probed call graph becomes
component-level calls (bench/experiments/predict/inputs.py), each against a known answer."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from bench.experiments.predict.command import parse_edge_network, verdict
from bench.experiments.predict.inputs import component_graph
from bench.experiments.predict.model import (Calibration, KindLatency, NetworkModel,
                                             mixture_percentile, predict, servers_of, shift_of)
from bench.results.model import Estimate
from shop.topology import load_topology, parse_topology

# What the probe answered for microservices (bench/experiments/journey/callgraph.py), trimmed.
PROBED = {
    "search": {"hops": {"gateway": {"search": 1.0}, "search": {"auth": 1.0}},
               "requests": {"auth": {"/internal/auth/verify": 1.0}}},
    "checkout": {"hops": {"gateway": {"billing": 1.0},
                          "billing": {"auth": 1.0, "search": 1.0, "notify": 1.0}},
                 "requests": {"notify": {"/internal/notify/deliver": 1.0}}},
    "inbox": {"hops": {"gateway": {"notify": 1.0}, "notify": {"auth": 1.0}}, "requests": {}},
    "topup": {"hops": {"gateway": {"billing": 1.0}, "billing": {"auth": 1.0}}, "requests": {}},
}


def calibration(**changes) -> Calibration:
    kinds = {k: KindLatency(np.array([1000.0, 2000.0, 3000.0]), np.array([n, n, n]))
             for k, n in (("search", 55), ("checkout", 20), ("inbox", 15), ("topup", 10))}
    base = dict(kinds=kinds, cpu_ms=2.0, memory_mib=60.0, hop_us=1500.0, gateway_us=1700.0,
                hop_cpu_ms=1.5, server_mib=45.0, lag_direct_us=200.0, lag_relay_us=3000.0)
    return Calibration(**{**base, **changes})


@pytest.fixture(scope="module")
def graph():
    return component_graph(PROBED, load_topology("microservices"))


def test_component_graph_splits_event_deliveries_from_calls_on_the_path(graph):
    checkout = {(c.caller, c.callee, c.event): c.per_request for c in graph["checkout"]}
    assert checkout == {("gateway", "billing", False): 1.0, ("billing", "auth", False): 1.0,
                        ("billing", "search", False): 1.0, ("billing", "notify", True): 1.0}
    assert {(c.caller, c.callee) for c in graph["search"]} == {("gateway", "search"),
                                                               ("search", "auth")}
    assert not any(c.event for kind in ("search", "inbox", "topup") for c in graph[kind])


def test_event_deliveries_to_any_replica_of_notify_are_events():
    probed = {"checkout": {"hops": {"gateway": {"billing": 1.0},
                                    "billing": {"auth": 1.0, "search": 1.0, "notify": 1.0}},
                           "requests": {"notify": {"/internal/notify/deliver": 0.5},
                                        "notify#2": {"/internal/notify/deliver": 0.5}}}}
    topo = parse_topology({"name": "notify-x2", "gateway": True, "process": {
        "auth": {"components": ["auth"]}, "billing": {"components": ["billing"]},
        "search": {"components": ["search"]},
        "notify": {"components": ["notify"], "replicas": 2}}}, "test")
    calls = {(c.callee, c.event): c.per_request for c in component_graph(probed, topo)["checkout"]}
    assert calls[("notify", True)] == 1.0 and ("notify", False) not in calls


def test_the_monolith_adds_nothing_and_predicts_itself(graph):
    mono = load_topology("monolith")
    c = calibration()
    p = predict(mono, c, graph)
    assert all(s.total_us == 0 and s.crossings == 0 for s in p.shifts.values())
    assert p.p50_us == 2000.0 and p.cpu_ms == c.cpu_ms and p.memory_mib == c.memory_mib
    assert p.lag_p50_us == c.lag_direct_us


def test_microservices_pays_the_gateway_and_every_hop_on_the_path(graph):
    c = calibration()
    p = predict(load_topology("microservices"), c, graph)
    assert p.shifts["checkout"].total_us == 1700 + 2 * 1500  # auth and search; notify is an event
    assert p.shifts["checkout"].crossings == 4 and p.shifts["checkout"].event_crossings == 1
    assert p.shifts["search"].total_us == p.shifts["inbox"].total_us == 1700 + 1500
    crossings = 0.55 * 2 + 0.20 * 4 + 0.15 * 2 + 0.10 * 2
    assert p.cpu_ms == pytest.approx(2.0 + crossings * 1.5)
    assert p.memory_mib == pytest.approx(60 + 4 * 45)  # five servers where the monolith had one
    assert p.lag_p50_us == c.lag_relay_us


def test_hybrid_crosses_only_where_its_processes_part(graph):
    p = predict(load_topology("hybrid"), calibration(), graph)
    assert p.shifts["topup"].total_us == 1700  # billing asks auth in its own process
    assert p.shifts["checkout"].total_us == 1700 + 1500  # search is elsewhere, auth is not
    assert p.shifts["search"].total_us == 1700 + 1500  # search asks auth in core
    assert servers_of(load_topology("hybrid")) == 4
    assert servers_of(load_topology("microservices-billing-x2")) == 6


def test_the_p50_is_of_the_shifted_mixture_not_a_shifted_p50(graph):
    """Ground truth: every request's latency listed, shifted by its kind's share, sorted."""
    rng = np.random.default_rng(3)
    c = calibration()
    kinds = {}
    raw = []
    topo = load_topology("microservices")
    for name, n in (("search", 300), ("checkout", 120), ("inbox", 90), ("topup", 60)):
        values = rng.integers(500, 20_000, n).astype(float)
        kinds[name] = KindLatency(values, np.ones(n))
        raw += list(values + shift_of(graph[name], topo, c, NetworkModel()).total_us)
    p = predict(topo, calibration(kinds=kinds), graph)
    h = HdrHistogram(1, 10_000_000, 3)
    for v in raw:
        h.record_value(int(v))
    exact = sorted(raw)[int(np.floor(0.5 * len(raw) + 0.5)) - 1]
    assert p.p50_us == exact
    assert p.p50_us == pytest.approx(h.get_value_at_percentile(50), rel=1e-3)


def test_mixture_percentile_follows_hdrhistograms_rule():
    parts = [(np.array([10.0, 30.0]), np.array([1, 1])), (np.array([20.0, 40.0]), np.array([1, 1]))]
    assert [mixture_percentile(parts, q) for q in (25, 50, 75, 100)] == [10, 20, 30, 40]
    assert np.isnan(mixture_percentile([], 50))


def test_the_network_model_adds_its_round_trip_per_crossing_on_the_path(graph):
    c = calibration()
    topo = load_topology("microservices")
    flat = predict(topo, c, graph, NetworkModel(rtt_ms=0.3, jitter_ms=0.1))
    assert flat.shifts["checkout"].network_us == pytest.approx(3 * 400)  # the event is not waited for
    edge = NetworkModel(rtt_ms=0.3, edges={"billing->search": (2.0, 0.0)})
    priced = predict(topo, c, graph, edge)
    assert priced.shifts["checkout"].network_us == pytest.approx(300 + 300 + 2000)
    assert priced.shifts["search"].network_us == pytest.approx(600)
    assert priced.cpu_ms == flat.cpu_ms  # waiting costs no CPU


def test_a_new_split_is_priced_from_its_own_crossings(graph):
    search_alone = parse_topology({"name": "search-alone", "gateway": True,
                                   "process": {"search": {"components": ["search"]},
                                               "core": {"components": ["auth", "billing", "notify"]}},
                                   "database": {"auth": "core", "billing": "core",
                                                "notify": "core"}}, "test")
    p = predict(search_alone, calibration(), graph)
    assert p.shifts["search"].total_us == 1700 + 1500  # search asks auth in core
    assert p.shifts["checkout"].total_us == 1700 + 1500  # billing asks search
    assert p.shifts["inbox"].total_us == p.shifts["topup"].total_us == 1700
    assert p.lag_p50_us == 200.0  # billing and notify still share a process and database


def test_verdicts_say_within_inside_or_misses():
    assert verdict(Estimate(110.0), Estimate(100.0, 90.0, 120.0)) == "within 15%"
    assert verdict(Estimate(125.0), Estimate(100.0, 80.0, 130.0)) == "inside its interval"
    assert verdict(Estimate(140.0), Estimate(100.0, 80.0, 130.0)) == "misses"
    assert verdict(Estimate(None), Estimate(100.0)) == "not predicted"  # saturated
    assert verdict(Estimate(100.0), Estimate(None)) == "not measured"
    assert verdict(Estimate(100.0), Estimate(0.0)) == "not measured"  # no memory sampled


def test_edge_network_options_are_checked():
    import click
    assert parse_edge_network(("gateway->billing=0.3,0.05",)) == {"gateway->billing": (0.3, 0.05)}
    for bad in ("billing=0.3", "a->b=", "a->b=-1", "a->b=nan", "a->b=1,2,3"):
        with pytest.raises(click.BadParameter):
            parse_edge_network((bad,))


CALIBRATION = "docs/results/20261207-025752-0294"  # docs/predict.md's


@pytest.mark.parametrize("args, said", [
    (["--from", "/nonexistent/run", "--topology", "hybrid"], "is not a seambench run"),
    (["--from", ".", "--topology", "hybrid", "--edge-network", "x"], "--edge-network"),
    (["--from", CALIBRATION, "--topology", "hybrid", "--edge-network", "auth->search=1"],
     "name processes (or gateway)"),  # hybrid's processes are core, search and notify
    (["--from", CALIBRATION, "--topology", "hybrid", "--rate", "61"], "no journey rung at 61"),
    (["--from", CALIBRATION, "--topology", "/nonexistent.toml"], "/nonexistent.toml"),
])
def test_predict_refuses_bad_input_in_one_line(args, said):
    done = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "predict",
                           *args], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr


def test_the_seam_stretches_with_the_load_its_cpu_puts_on_the_cores(graph):
    """Processor sharing: at 100 req/s on one core the split's 2 + 2.4*1.5 = 5.6 CPU-ms a
    request keep the core 56% busy, so each hop and the gateway take 1/(1-0.56) as long;
    the monolith's own latencies were measured at its load and stay as they are."""
    c = calibration(rate=100.0, cores=1)
    mono = predict(load_topology("monolith"), c, graph)
    assert mono.p50_us == 2000.0 and mono.busy == pytest.approx(0.2)
    split = predict(load_topology("microservices"), c, graph)
    busy = 100 * split.cpu_ms / 1000
    assert split.busy == pytest.approx(busy) and split.stretch == pytest.approx(1 / (1 - busy))
    assert busy == pytest.approx(0.56)
    assert split.p50_us == pytest.approx(2000.0 + (1700 + 1500) / (1 - busy))  # search's median
    waiting = predict(load_topology("microservices"), c, graph, NetworkModel(rtt_ms=1.0))
    assert waiting.p50_us == pytest.approx(split.p50_us + 2 * 1000)  # waiting does not stretch
    two_cores = predict(load_topology("microservices"), calibration(rate=100.0, cores=2), graph)
    assert two_cores.busy == pytest.approx(busy / 2)
    saturated = predict(load_topology("microservices"), calibration(rate=200.0, cores=1), graph)
    assert saturated.busy > 1 and saturated.p50_us == float("inf")


def test_predict_from_the_committed_calibration_run(tmp_path):
    """docs/predict.md's calibration run, kept in docs/results/: predict answers from it in
    seconds for a file it has never seen, and prices microservices as docs/predict.md says
    against the run that measured it the same hour."""
    import json
    import time

    from click.testing import CliRunner

    from bench.cli import cli
    docs = Path(__file__).resolve().parents[2] / "docs"
    unseen = tmp_path / "notify-alone.toml"
    unseen.write_text('name = "notify-alone"\ngateway = true\n'
                      'process.notify.components = ["notify"]\n'
                      'process.core.components = ["auth", "billing", "search"]\n'
                      'database = { auth = "core", billing = "core", search = "core" }\n')
    out = tmp_path / "p.json"
    started = time.monotonic()
    done = CliRunner().invoke(cli, [
        "predict", "--from", str(docs / "results/20261207-025752-0294"), "--topology",
        str(unseen), "--topology", "microservices", "--against",
        str(docs / "results/20261207-032057-4046"), "--json", str(out)])
    assert done.exit_code == 0, done.output
    assert time.monotonic() - started < 20
    predicted = json.loads(out.read_text())["predictions"]
    assert predicted["microservices"]["verdict"] == {"p50": "within 15%",
                                                     "cpu_ms_per_request": "within 15%",
                                                     "memory_mib": "within 15%"}
    # notify alone: inbox crosses to auth, a checkout's event to notify; lag by the relay
    assert predicted["notify-alone"]["added_us_per_kind"]["topup"] < \
        predicted["notify-alone"]["added_us_per_kind"]["inbox"]
    assert predicted["notify-alone"]["lag_p50_us"] > 1000
