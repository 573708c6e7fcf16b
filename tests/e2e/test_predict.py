"""`seambench predict` end to end: a smoke run of hops and journey probes each placement's
call graph, and predict prices topologies from it in seconds; the monolith priced from
itself is its own measured p50 (the mixture of kinds is the journey's p50, not an average)."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from shop.topology import REQUEST_CALLS
from tests.e2e.test_launcher import SEAMBENCH

RUN = ["run", "--profile", "smoke", "--kdf-log2", "4", "--catalog-size", "2000",
       "--experiment", "hops", "--experiment", "journey", "--trials", "3"]
ENTRY = {"search": "search", "checkout": "billing", "inbox": "notify", "topup": "billing"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    results = tmp_path_factory.mktemp("predict")
    done = subprocess.run([*SEAMBENCH, *RUN, "--results", str(results)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode in (0, 3), done.stderr[-3000:]
    [found] = results.iterdir()
    return found


def test_the_journey_probes_the_call_graph_of_each_placement(run_dir):
    graphs = json.loads((run_dir / "call_graph.json").read_text())
    assert set(graphs) == {"monolith", "microservices"}
    assert all(doc["hops"] == {} for doc in graphs["monolith"].values())
    for kind, entry in ENTRY.items():
        hops = graphs["microservices"][kind]["hops"]
        assert hops["gateway"] == {entry: 1.0}, kind  # one hop in, to the owner
        on_path = {dep for dep in hops.get(entry, {}) if dep != "notify"}
        # within the shop's own table of what a component's requests may call
        assert "auth" in on_path <= set(REQUEST_CALLS[entry]), kind
    assert set(graphs["microservices"]["checkout"]["hops"]["billing"]) - {"notify"} == \
        set(REQUEST_CALLS["billing"])
    # a checkout's payment reaches notify once, by the relay, and is counted with it
    assert graphs["microservices"]["checkout"]["hops"]["billing"]["notify"] == 1.0
    assert graphs["microservices"]["checkout"]["requests"]["notify"] == {
        "/internal/notify/deliver": 1.0}


def test_predict_prices_topologies_from_the_run_in_seconds(run_dir, tmp_path):
    summary = json.loads((run_dir / "summary.json").read_text())
    out = tmp_path / "predicted.json"
    started = time.monotonic()
    done = subprocess.run([*SEAMBENCH, "predict", "--from", str(run_dir), "--rate", "30",
                           "--topology", "monolith", "--topology", "microservices",
                           "--topology", "hybrid", "--against", str(run_dir), "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    hops = summary["experiments"]["hops"]["placements"]
    if done.returncode == 2:  # refused: only because the run itself has nothing to rest on
        assert "no valid hops steps" in done.stderr, done.stderr
        assert min(hops[p]["valid_trials"] for p in hops) == 0
        return
    assert done.returncode == 0, done.stderr
    assert took < 30, took
    predicted = json.loads(out.read_text())["predictions"]
    mono = predicted["monolith"]
    assert mono["p50_us"]["value"] == mono["measured"]["p50_us"]["value"]
    assert mono["cpu_ms_per_request"]["value"] == pytest.approx(
        mono["measured"]["cpu_ms_per_request"]["value"], rel=1e-6)
    split, hybrid = predicted["microservices"], predicted["hybrid"]
    assert split["p50_us"]["value"] > mono["p50_us"]["value"]
    assert split["cpu_ms_per_request"]["value"] > hybrid["cpu_ms_per_request"]["value"] \
        > mono["cpu_ms_per_request"]["value"]
    assert split["added_us_per_kind"]["checkout"] > hybrid["added_us_per_kind"]["checkout"]
    assert "measured" in split and "verdict" in split and "measured" not in hybrid
    assert "hybrid: at 30 req/s" in done.stdout
