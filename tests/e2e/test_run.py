"""`seambench run` end to end (smoke profile: seconds per trial): both placements measured,
the results directory complete and self-consistent, nothing leaked, interruptions kept."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import time

import psutil
import pytest

from bench.results import hdr
from tests.e2e.test_launcher import SEAMBENCH, alive

SMALL = ["--profile", "smoke", "--kdf-log2", "4", "--catalog-size", "2000"]
FILES = ("manifest.json", "steps.csv", "resources.csv", "summary.json", "report.md", "report.html")


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_measures_both_placements_and_writes_the_results_directory(tmp_path):
    done = subprocess.run([*SEAMBENCH, "run", *SMALL, "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=400)
    [run_dir] = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    # 0, or 3 when a headline rests on no valid step; the summary says which and why
    assert done.returncode == summary["exit_code"] in (0, 3), done.stderr[-3000:]
    for name in FILES:
        assert (run_dir / name).stat().st_size > 0, name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["ended_at"] > manifest["started_at"]
    env = manifest["environment"]
    assert env["git_revision"] and env["cpu_model"] and env["kernel"] and env["python"]
    assert env["packages"]["locust"] and env["packages"]["hdrhistogram"]
    assert manifest["config"]["profile"]["name"] == "smoke" and manifest["config"]["seed"] == 1
    assert list(manifest["config"]["experiments"]) == ["hops", "journey", "fanout"]
    # fan-out measures the split placement with its leaves as servers: recorded as such
    leaves = manifest["config"]["variants"]["fanout"]["microservices"]["topology"]["leaves"]
    assert leaves["processes"] is True and leaves["shards"] == 4 and leaves["replicas"] == 2
    assert manifest["config"]["variants"]["fanout"]["monolith"]["topology"]["leaves"]["processes"] is False

    steps = rows(run_dir / "steps.csv")
    trials = manifest["config"]["profile"]["trials"]
    per_trial = 1 + len(manifest["config"]["experiments"]["journey"]["rates"]) + 1
    again = [s for s in steps if s.get("measures_again") not in (None, "")]
    assert len(steps) - len(again) == trials * per_trial * 2
    # a trial spoiled by the harness was measured once more, in both placements, as a trial
    # numbered after the run's
    assert len(again) % 2 == 0 and all(int(s["trial"]) >= trials for s in again)
    # interleaved: each rung of each trial ran in both placements back to back, in an order
    # drawn from the seed
    for first, second in zip(steps[::2], steps[1::2]):
        assert [first[k] for k in ("experiment", "rung", "trial")] == \
            [second[k] for k in ("experiment", "rung", "trial")]
        assert {first["placement"], second["placement"]} == {"monolith", "microservices"}
    for s in steps:
        assert int(s["completed"]) > 0 and int(s["errors"]) == 0, s
        assert float(s["system_cpu_s"]) > 0 and float(s["system_pss_mib"]) > 10, s
        assert (s["valid"] == "True") == (s["invalid_reasons"] == ""), s  # invalid says why
        if s["experiment"] == "journey":
            assert int(s["notifications"]) == int(s["payments"])  # every payment notified

    # the interval logs are the only latency record: they hold every completed request
    # (what answers reported about themselves is logged apart, and counts no request)
    for step in steps:
        logged = observed = 0
        for log in (run_dir / step["raw_dir"]).glob("intervals-*.hlog"):
            intervals = hdr.read_interval_log(log)
            if "-observed-" in log.name:  # a fan-out's leaves: one slowest per answer
                observed += sum(iv.histogram.get_total_count() for iv in intervals
                                if iv.tag.endswith("slowest_leaf"))
                continue
            logged += sum(iv.histogram.get_total_count() for iv in intervals
                          if iv.tag != "notification_lag")
        assert logged == int(step["completed"]) + int(step["censored"]), step
        if step["experiment"] == "fanout":
            assert observed == int(step["completed"]), step
    for trial in range(trials):  # the floors too, per trial
        tags = {iv.tag for iv in hdr.read_interval_log(run_dir / f"raw/floors-t{trial}/intervals-harness.hlog")}
        assert tags == {"floor_tcp", "floor_http", "floor_http_nested"}

    assert summary["schema"] == "seambench.summary/2" and summary["complete"] is True
    assert summary["placements"] == ["monolith", "microservices"]
    hops = summary["experiments"]["hops"]
    for kind in ("tcp", "http", "http_nested"):
        assert hops["floors"][kind]["p50"]["value"] > 0
    micro, mono = hops["placements"]["microservices"], hops["placements"]["monolith"]
    assert micro["http_hops_per_chain"] == [1, 2, 3, 4, 5]
    assert mono["http_hops_per_chain"] == [0, 0, 0, 0, 0]
    invalid = [s for s in steps if s["valid"] != "True"]
    assert len(summary["invalid_steps"]) == len(invalid)
    if micro["valid_trials"] == trials and mono["valid_trials"] == trials:
        assert micro["per_call_us"]["value"] > mono["per_call_us"]["value"]
    journey = summary["experiments"]["journey"]
    if journey["headline_rung"] is None:
        assert summary["exit_code"] == 3 and invalid
    else:
        label = journey["headline_rung"]
        ratio = journey["ratios"]["microservices/monolith"][label]["p50"]
        counted = journey["placements"]["monolith"][label]["counted_trials"]
        assert counted == journey["placements"]["microservices"][label]["counted_trials"]
        if not counted:  # sustained, but no trial stood in both placements: said, not guessed
            assert ratio["value"] is None and ratio["note"], ratio
        else:
            assert ratio["value"] > 0 and ratio["pairs"] == len(counted)
            if len(counted) >= 2:
                assert len(ratio["ci95"]) == 2
            else:  # one pair: a jackknife has no interval, and none is invented
                assert ratio["ci95"] is None
            # one estimand: the ratio is the quotient of the two placements' pooled p50s
            p50 = {p: journey["placements"][p][label]["latency"]["p50"]["value"]
                   for p in ("monolith", "microservices")}
            assert ratio["value"] == pytest.approx(p50["microservices"] / p50["monolith"],
                                                   rel=1e-3)
    # Inside the shop, from each server's /metrics around each step: the edge answered every
    # request the generator completed (and the warm-up's); split, every public request
    # verified its token with auth, and the monolith made no hop at all.
    calls = rows(run_dir / "calls.csv")
    for step in (s for s in steps if s["experiment"] == "journey"):  # (hop steps add floors)
        edge = "gateway" if step["placement"] == "microservices" else "app"
        answered = sum(int(c["count"]) for c in calls if c["slug"] == step["slug"]
                       and c["server"] == edge and c["kind"] == "request")
        assert answered >= int(step["completed"]), step["slug"]
    for rung in journey["placements"]["microservices"].values():
        if "inside" in rung:
            assert rung["inside"]["requests_per_edge_request"]["auth"] >= 0.99
            assert set(rung["inside"]["hops_per_edge_request"]) >= {"auth", "search"}
    assert not any(c["kind"] == "hop" for c in calls if c["placement"] == "monolith")
    fanout = summary["experiments"]["fanout"]["placements"]
    for placement, entry in fanout.items():
        if not entry["valid_trials"]:
            continue
        kinds = entry["kinds"]
        assert {k["n"] for k in kinds.values()} == {1, 4}
        for k in kinds.values():
            assert k["p50"]["samples"] > 0
            if k["variant"] == "tail":  # every tail kind is set against 1-(1-p)^n
                assert k["slow_fraction"]["expected"] == 1 - (1 - 0.02) ** k["n"]
        # F(t)^n from every leaf call the scatterer timed, against the slowest of the 4:
        # one slowest-leaf value per successful n=4 request, none from the warm-up
        predicted = kinds["n=4"]["predicted"]["p50"]
        assert predicted["basis"] == "leaf" and predicted["value"] > 0
        ok = kinds["n=4"]["p50"]["samples"]
        assert 0.9 * ok <= predicted["measured"]["samples"] <= ok
        assert predicted["measured"]["value"] <= kinds["n=4"]["p50"]["value"]
        hedging = entry["hedging"]  # backups counted by the scatterer itself, per hedged call
        assert hedging["leaf_calls"]["hedged"] > 0 and 0 <= hedging["extra_requests"] <= 1
    assert fanout["microservices"]["leaves"]["servers"] == 8
    assert fanout["microservices"]["leaves"]["pss_mib_mean"] > 5
    assert "## Fan-out" in (run_dir / "report.md").read_text()
    assert (run_dir / "figures" / "fanout-percentiles.png").stat().st_size > 5_000
    assert summary["headlines"] and "report.html" in done.stdout
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html


def test_interrupted_run_keeps_partial_results_marked_incomplete(tmp_path):
    # Output to a file, not a pipe nobody reads until the end: the console's progress would
    # fill a pipe's 64 KiB and block the run (it did under CI=true, once start-up grew).
    output = open(tmp_path.parent / f"{tmp_path.name}-output.txt", "w")
    # one experiment: what is started before the first step is what the interrupt must stop
    run = subprocess.Popen([*SEAMBENCH, "run", *SMALL, "--experiment", "hops", "--trials", "50",
                            "--results", str(tmp_path)],
                           stdout=output, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        children: set[int] = set()
        run_dir = None
        while time.monotonic() < deadline:  # until a step is recorded
            children |= {p.pid for p in psutil.Process(run.pid).children(recursive=True)}
            found = list(tmp_path.iterdir())
            if found and (found[0] / "steps.csv").exists() and len(rows(found[0] / "steps.csv")) >= 1:
                run_dir = found[0]
                break
            time.sleep(0.2)
        assert run_dir is not None, "no step finished in time"
        children |= {p.pid for p in psutil.Process(run.pid).children(recursive=True)}
        run.send_signal(signal.SIGINT)
        assert run.wait(90) == 130
    finally:
        if run.poll() is None:
            run.kill()
        output.close()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["incomplete_reason"] == "interrupted"
    assert len(rows(run_dir / "steps.csv")) >= 1  # what was measured is kept
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] is False and "INCOMPLETE" in summary["warnings"][0]
    assert not [pid for pid in children if alive(pid)]
