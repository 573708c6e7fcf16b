"""`seambench run --trace` end to end: each placement runs again traced as NAME-traced,
paired by trial; the spans land in the run directory as OTLP JSON, one trace per sampled
journey request across every process it crossed; the report attributes them and says what
tracing cost. Untraced placements make no span at all."""
from __future__ import annotations

import json
import subprocess

import pytest

from shop.tracing import read_spans
from tests.e2e.test_launcher import SEAMBENCH

RUN = ["run", "--profile", "smoke", "--kdf-log2", "4", "--catalog-size", "2000",
       "--experiment", "hops", "--experiment", "journey", "--trials", "2", "--trace"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    results = tmp_path_factory.mktemp("trace")
    done = subprocess.run([*SEAMBENCH, *RUN, "--results", str(results)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode in (0, 3), done.stderr[-3000:]
    [found] = results.iterdir()
    return found


def test_each_placement_has_a_traced_twin_paired_with_it(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    config = manifest["config"]
    names = [t["name"] for t in config["topologies"]]
    assert names == ["monolith", "microservices", "monolith-traced", "microservices-traced"]
    assert set(config["traced"]) == {"monolith-traced", "microservices-traced"}
    assert config["traced"]["microservices-traced"]["ratio"] == 1.0
    assert ["microservices-traced", "microservices"] in config["comparisons"]
    traces = run_dir / "traces"
    assert sorted(p.name for p in traces.iterdir()) == ["microservices-traced", "monolith-traced"]


def test_a_split_request_is_one_trace_across_every_process_it_crossed(run_dir):
    spans = read_spans(run_dir / "traces" / "microservices-traced")
    services = {s["service"] for s in spans}
    assert {"gateway", "auth", "billing", "search", "notify"} <= services
    by_id = {s["span_id"]: s for s in spans}
    checkouts = [s for s in spans if s["parent_span_id"] is None and s["kind"] == "server"
                 and s["attributes"].get("url.path") == "/billing/checkout"]
    assert checkouts
    root = checkouts[0]
    members = [s for s in spans if s["trace_id"] == root["trace_id"]]
    assert {s["service"] for s in members} >= {"gateway", "billing", "auth", "search"}
    for s in members:
        if s is not root:  # every span's parent is in the same trace
            assert by_id[s["parent_span_id"]]["trace_id"] == root["trace_id"]
    monolith = read_spans(run_dir / "traces" / "monolith-traced")
    assert monolith and all(s["kind"] != "client" for s in monolith)  # no hop in one process


def test_the_report_attributes_the_traced_requests_and_prices_tracing(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    journey = summary["experiments"]["journey"]
    tracing = journey["tracing"]
    assert set(tracing) == {"monolith-traced", "microservices-traced"}
    split = tracing["microservices-traced"]
    label = split["rung"]  # the headline rate, else the lowest
    assert label == (journey["headline_rung"] or "r30")
    if not journey["placements"]["microservices-traced"][label]["counted_trials"]:
        assert split["requests"] == 0  # nothing valid to attribute: said, not guessed
        return
    assert split["requests"] > 0 and split["kinds"]
    median = split["all"]["median"]
    assert sum(median["parts_us"].values()) == pytest.approx(median["total_us"], rel=1e-6)
    assert split["edges"]["gateway->billing"]["calls_per_request"] > 0
    mono = tracing["monolith-traced"]["all"]["median"]["parts_us"]
    assert mono["network"] == mono["queueing"] == 0  # nothing crosses a process
    assert label in journey["ratios"]["microservices-traced/microservices"]
    report = (run_dir / "report.md").read_text()
    assert "Where the milliseconds go" in report
    assert (run_dir / "figures" / "waterfall-microservices-traced.png").stat().st_size > 5_000


def test_untraced_placements_export_nothing(run_dir):
    assert not (run_dir / "traces" / "microservices").exists()
    assert not list((run_dir / "logs").rglob("spans-*.jsonl"))
