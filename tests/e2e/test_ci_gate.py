"""scripts/ci-gate fails closed: a run too small to decide its budgets is measured again,
and when that cannot decide either the gate fails (exit 3), each undecided budget a JUnit
failure. (The gate's power against a real regression is measured, not tested: docs/budgets.md's
detection table, from scripts/gate_power.py.)"""
from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Seconds-long runs (the smoke profile, two trials): every budget is noisy or missing.
TINY = ["--profile", "smoke", "--kdf-log2", "4", "--catalog-size", "2000",
        "--set", "journey.rates=[20]", "--trials", "2", "--set", "journey.trials=2"]


def test_an_undecided_gate_measures_again_then_fails(tmp_path: Path) -> None:
    results = tmp_path / "gate"
    done = subprocess.run([str(ROOT / "scripts" / "ci-gate"), str(results), "HEAD", *TINY],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 3, done.stderr[-3000:]
    assert "measuring again" in done.stderr
    assert "still undecided" in done.stderr
    for attempt in ("first", "again"):  # both runs kept, each with the base beside
        [run] = [p for p in (results / attempt).iterdir() if p.is_dir()]
        assert (run / "summary.json").is_file()
    suite = ET.parse(results / "junit.xml").getroot().find("testsuite")
    failures = [(case.get("name"), f.get("type")) for case in suite.iter("testcase")
                for f in case.iter("failure")]
    assert failures and int(suite.get("failures")) == len(failures)
    assert {kind for _, kind in failures} <= {"noisy", "missing"}
    assert any("vs microservices@base" in name for name, _ in failures)
    assert (results / "budgets.md").read_text().startswith("## seambench check: undecided")
