"""`seambench run` end to end (smoke profile: seconds per trial): both placements measured,
the results directory complete and self-consistent, nothing leaked, interruptions kept."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import time

import psutil

from bench import hdr
from tests.e2e.test_launcher import SEAMBENCH, alive

SMALL = ["--profile", "smoke", "--kdf-log2", "4", "--catalog-size", "2000"]
FILES = ("manifest.json", "steps.csv", "requests.csv", "floors.csv", "timeseries.csv",
         "resources.csv", "histograms.hlog", "summary.json", "report.md", "report.html")


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_measures_both_placements_and_writes_the_results_directory(tmp_path):
    done = subprocess.run([*SEAMBENCH, "run", *SMALL, "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    [run_dir] = tmp_path.iterdir()
    for name in FILES:
        assert (run_dir / name).stat().st_size > 0, name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["ended_at"] > manifest["started_at"]
    env = manifest["environment"]
    assert env["git_revision"] and env["cpu_model"] and env["kernel"] and env["python"]
    assert env["packages"]["locust"] and env["packages"]["hdrhistogram"]
    assert manifest["config"]["profile"]["name"] == "smoke" and manifest["config"]["seed"] == 1

    steps = rows(run_dir / "steps.csv")
    trials = manifest["config"]["profile"]["trials"]
    per_trial = 1 + len(manifest["config"]["profile"]["journey_rates"])
    assert len(steps) == trials * per_trial * 2
    # interleaved: each step ran in both placements back to back, order rotating per trial
    assert [s["placement"] for s in steps[:2]] == ["monolith", "microservices"]
    assert [s["placement"] for s in steps[per_trial * 2:per_trial * 2 + 2]] == ["microservices", "monolith"]
    for s in steps:
        assert int(s["completed"]) > 0 and int(s["errors"]) == 0, s
        assert float(s["system_cpu_s"]) > 0 and int(s["system_rss_max_bytes"]) > 10_000_000
        if s["experiment"] == "journey":
            assert int(s["notifications"]) == int(s["payments"])  # every payment notified

    # the raw interval histograms add up to the step totals
    step = steps[0]
    totals = {r["name"]: int(r["completed"]) for r in rows(run_dir / "requests.csv")
              if r["experiment"] == step["experiment"] and r["placement"] == step["placement"]
              and r["trial"] == step["trial"]}
    logged = {}
    for log in (run_dir / step["raw_dir"]).glob("intervals-*.hlog"):
        for iv in hdr.read_interval_log(log):
            logged[iv.tag] = logged.get(iv.tag, 0) + iv.histogram.get_total_count()
    assert logged == {name.replace(" ", "_"): n for name, n in totals.items()}

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["schema"] == "seambench.summary/1" and summary["complete"] is True
    assert summary["placements"] == ["monolith", "microservices"]
    for kind in ("tcp", "http", "http_nested", "hop"):
        assert summary["floors"][kind]["p50_us"]["value"] > 0
    micro = summary["hops"]["microservices"]
    assert micro["http_hops_per_chain"] == [1, 2, 3, 4, 5]
    assert summary["hops"]["monolith"]["http_hops_per_chain"] == [0, 0, 0, 0, 0]
    assert micro["per_call_us"]["value"] > summary["hops"]["monolith"]["per_call_us"]["value"]
    ratio = summary["ratios"]["microservices/monolith"][summary["headline_rate"]]
    assert ratio["p99_us"]["value"] > 0 and len(ratio["p99_us"]["ci95"]) == 2
    assert summary["headlines"] and "report.html" in done.stdout
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html


def test_interrupted_run_keeps_partial_results_marked_incomplete(tmp_path):
    run = subprocess.Popen([*SEAMBENCH, "run", *SMALL, "--trials", "50", "--results", str(tmp_path)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        children: set[int] = set()
        run_dir = None
        while time.monotonic() < deadline:  # until at least two steps are recorded
            children |= {p.pid for p in psutil.Process(run.pid).children(recursive=True)}
            found = list(tmp_path.iterdir())
            if found and (found[0] / "steps.csv").exists() and len(rows(found[0] / "steps.csv")) >= 2:
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
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["incomplete_reason"] == "interrupted"
    assert len(rows(run_dir / "steps.csv")) >= 2  # what was measured is kept
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] is False and "INCOMPLETE" in summary["warnings"][0]
    assert not [pid for pid in children if alive(pid)]
