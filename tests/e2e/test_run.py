"""`seambench run` end to end: both placements measured, results written, nothing leaked."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import psutil

from tests.e2e.test_launcher import SEAMBENCH, alive

QUICK = ["--kdf-log2", "4", "--catalog-size", "2000"]


def test_run_measures_both_placements(tmp_path):
    done = subprocess.run([*SEAMBENCH, "run", "--checkouts", "40", "--rounds", "2", "--warmup", "5",
                           "--results", str(tmp_path), *QUICK],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    [run_dir] = tmp_path.iterdir()
    manifest = json.loads((run_dir / "probe.json").read_text())
    assert manifest["complete"] is True
    assert manifest["environment"]["cpu_count"] >= 1 and manifest["environment"]["python"]
    by_name = {r["placement"]: r for r in manifest["results"]}
    assert set(by_name) == {"monolith", "microservices"}
    for result in by_name.values():
        assert result["checkouts"] == 40
        assert 0 < result["p50_us"] <= result["p90_us"] <= result["p99_us"] <= result["max_us"]
    assert "p50 microservices/monolith" in done.stdout


def test_interrupted_run_keeps_partial_results_marked_incomplete(tmp_path):
    run = subprocess.Popen([*SEAMBENCH, "run", "--checkouts", "100000", "--rounds", "1",
                            "--warmup", "0", "--results", str(tmp_path), *QUICK],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        children: set[int] = set()
        while time.monotonic() < deadline:  # wait until both placements are up and measuring
            children |= {p.pid for p in psutil.Process(run.pid).children(recursive=True)}
            if len(children) >= 7:  # monolith (master + worker) + 5 microservices masters
                break
            time.sleep(0.2)
        time.sleep(2)
        children |= {p.pid for p in psutil.Process(run.pid).children(recursive=True)}
        run.send_signal(signal.SIGINT)
        assert run.wait(60) != 0
    finally:
        if run.poll() is None:
            run.kill()
    [run_dir] = tmp_path.iterdir()
    manifest = json.loads((run_dir / "probe.json").read_text())
    assert manifest["complete"] is False and manifest["ended_at"] >= manifest["started_at"]
    assert manifest["results"][0]["placement"] == "monolith"  # what was measured is kept
    assert manifest["results"][0]["checkouts"] > 0
    assert not [pid for pid in children if alive(pid)]
