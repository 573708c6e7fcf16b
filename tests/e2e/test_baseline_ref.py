"""Two versions of the shop in one run (``run --baseline-ref``): the NAME@base placements
serve the ref's code, not this checkout's, and the run pairs each placement with its base.

A clone of this repository gets one commit that changes what /healthz answers; its parent is
the unchanged shop. Whatever is started from a ref must answer as that ref's code does."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from bench.system.gitref import checked_out
from bench.system.launcher import launch
from shop.placement import load_topology
from tests.placements import TEST_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
SEAMBENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
PLANTED = '"planted-version"'


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory) -> Path:
    """A clone of this repository's HEAD with one more commit, whose /healthz also says
    {"version": "planted-version"}."""
    clone = tmp_path_factory.mktemp("versions") / "clone"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(ROOT), str(clone)], check=True)
    git(clone, "config", "user.email", "t@example.invalid")
    git(clone, "config", "user.name", "t")
    web = clone / "shop" / "web.py"
    old = 'return json_response({"status": "ok", "process": name})'
    text = web.read_text()
    assert old in text, "the /healthz line this test plants into moved: update the test"
    web.write_text(text.replace(old, old.replace('"process": name', f'"process": name, '
                                                                    f'"version": {PLANTED}')))
    git(clone, "commit", "--quiet", "-am", "plant a version marker in /healthz")
    return clone


@pytest.mark.parametrize("ref, planted", [("HEAD", True), ("HEAD~1", False)])
def test_every_process_started_from_a_ref_runs_that_refs_code(two_versions: Path, ref: str,
                                                              planted: bool) -> None:
    with checked_out(ref, repo=two_versions) as source:
        settings = replace(TEST_SETTINGS, source=source)
        with launch(load_topology("microservices"), settings) as shop:
            for name, proc in shop.processes.items():
                body = requests.get(proc.url + "/healthz", timeout=5).json()
                assert ("version" in body) is planted, (name, body)
                cwd = Path(f"/proc/{proc.pid}/cwd").resolve()
                assert cwd == Path(source.root).resolve(), name
    assert not Path(source.root).exists()


def test_a_run_with_a_baseline_ref_pairs_each_placement_with_its_base(tmp_path: Path) -> None:
    """This checkout against its own HEAD: four placements interleaved, a paired ratio
    NAME/NAME@base, the ref named in the manifest and the report, the worktree gone."""
    done = subprocess.run([*SEAMBENCH, "run", "--profile", "smoke", "--kdf-log2", "4",
                           "--catalog-size", "2000", "--experiment", "hops",
                           "--experiment", "journey", "--set", "journey.rates=[20]",
                           "--baseline-ref", "HEAD", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode in (0, 3), done.stderr[-3000:]
    assert "seambench: baseline HEAD = " in done.stderr
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    head = git(ROOT, "rev-parse", "HEAD")
    sources = manifest["config"]["sources"]
    assert set(sources) == {"monolith@base", "microservices@base"}
    assert {s["commit"] for s in sources.values()} == {head}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["placements"] == ["monolith", "microservices", "monolith@base",
                                     "microservices@base"]
    ratios = summary["experiments"]["journey"]["ratios"]
    assert "microservices/microservices@base" in ratios and "monolith/monolith@base" in ratios
    hop = summary["experiments"]["hops"]["ratios"]["microservices/microservices@base"]
    # the budgets read the same paired figure the report prints
    budgets = tmp_path / "gate.toml"
    budgets.write_text('[[budget]]\nexperiment = "hops"\nplacement = "microservices"\n'
                       '[budget.growth]\nversus = "microservices@base"\nper_call_ms = 0.5\n')
    checked = subprocess.run([*SEAMBENCH, "check", str(run_dir), "--budgets", str(budgets),
                              "--allow-invalid"], capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode in (0, 1), checked.stderr
    if hop["value"] is not None:
        assert f"{(hop['value'] - 1) * 100:+.1f}%" in checked.stdout, (hop, checked.stdout)
    placed = {s["placement"] for s in summary["steps"]}
    assert placed == set(summary["placements"])
    assert f"git ref HEAD = {head[:12]}" in (run_dir / "report.md").read_text()
    assert "seambench-ref-" not in git(ROOT, "worktree", "list")
