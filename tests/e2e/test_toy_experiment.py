"""A new experiment is a package of its own: the toy (tests/e2e/toy/) has its own scenario
and its own budget figure, and runs through the harness core into summary.json, the report
and `seambench check` without any core module knowing of it. And a distribution that declares
an experiment in the seambench.experiments entry-point group is found like a pytest plugin."""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace

from bench import experiments
from bench.budgets.command import run_check
from bench.budgets.evaluate import Allowances
from bench.results.model import EXIT_OK
from bench.run import RunConfig, cpu_plan, execute
from bench.system.launcher import LaunchSettings
from shop.placement import load_topology
from shop.search.service import SearchSettings
from tests.e2e.toy.experiment import EXPERIMENT as TOY

BUDGETS = """
[[budget]]
experiment = "toy"
placement = "monolith"
request = ["health", "ready"]
[budget.ceiling]
p50_ms = {limit}
"""


def small_run(experiment: str, trials: int) -> RunConfig:
    """A smoke-profile run of ``experiment`` alone on a small monolith."""
    settings = replace(LaunchSettings(), scrypt_n=2**4,
                       search=replace(SearchSettings(), catalog_size=2000))
    return RunConfig.build("smoke", [load_topology("monolith")], settings, cpu_plan(),
                           experiments=(experiment,), trials=trials)


def test_a_registered_toy_experiment_runs_through_the_core_and_its_budget(tmp_path):
    experiments.register(TOY)
    config = small_run("toy", trials=4)
    outcome = execute(config, tmp_path / "runs")
    assert outcome.complete and outcome.summary is not None, outcome.reason
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    toy = summary["experiments"]["toy"]
    assert list(summary["experiments"]) == ["toy"]
    measured = [s for s in summary["steps"] if s["experiment"] == "toy"]
    again = [s for s in measured if s["trial"] >= 4]  # a spoiled trial measured once more
    assert toy["valid_steps"] + len(summary["invalid_steps"]) == 4 + len(again)
    # the budget below needs two valid trials for an interval (a trial is invalid only when
    # the shared machine made the generator late)
    assert toy["valid_steps"] >= 2, summary["invalid_steps"]
    # its own scenario sent both requests, every one recorded: the shop answered in some µs
    assert all(toy["p50_us"][name] > 0 for name in ("health", "ready"))
    assert toy["seen"] > 0 and outcome.exit_code == EXIT_OK
    [row] = [h for h in summary["headlines"] if h["label"] == "toy health p50"]
    assert row["kind"] == "latency"
    steps = [s for s in summary["steps"] if s["experiment"] == "toy"]
    assert [s["trial"] for s in steps][:4] == [0, 1, 2, 3] and all(s["rung"] == "health" for s in steps)
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["config"]["experiments"] == {"toy": {"rate": 40.0, "warmup_s": 0.3,
                                                         "duration_s": 1.0}}
    assert "Toy experiment" in (outcome.run_dir / "report.md").read_text()

    # the toy's budget figure, through `seambench check`: it can pass and it can fail
    def check(limit_ms: float) -> tuple[int, str]:
        path = tmp_path / f"budgets-{limit_ms}.toml"
        path.write_text(BUDGETS.format(limit=limit_ms))
        out: list[str] = []
        code = run_check(outcome.run_dir, path, None, None, None, Allowances(invalid=True),
                         False, out.append, out.append)
        return code, "".join(out)

    code, text = check(10_000.0)
    assert code == 0 and "2 budgets: 2 pass, 0 breach" in text, text
    code, text = check(0.001)  # no HTTP round trip takes 1 µs
    assert code == 1 and "2 budgets: 0 pass, 2 breach" in text, text


PLUGIN = '''
from tests.e2e.toy.experiment import Toy


class Plugged(Toy):
    name = "plugged"


EXPERIMENT = Plugged()
'''


class LateToy(type(TOY)):
    """The toy held to a lateness limit no generator can keep: every step is spoiled."""

    name = "late-toy"
    max_lateness_p99_us = 0


def test_a_step_the_harness_spoiled_is_measured_again_once_at_the_end(tmp_path):
    experiments.register(LateToy())
    config = small_run("late-toy", trials=2)
    outcome = execute(config, tmp_path / "runs")
    assert outcome.complete, outcome.reason
    with open(outcome.run_dir / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # trials 0 and 1 as planned, then each once more as trials 2 and 3, and never a third time
    assert [(r["trial"], r["measures_again"]) for r in rows] == [("0", ""), ("1", ""), ("2", "0"),
                                                                 ("3", "1")]
    assert all("late_sends" in r["invalid_codes"] for r in rows)
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["experiments"]["late-toy"]["valid_steps"] == 0
    # a profile whose time for measuring again is up leaves them not measured
    hurried = replace(config, profile=replace(config.profile, again_within_s=0))
    outcome = execute(hurried, tmp_path / "hurried")
    with open(outcome.run_dir / "steps.csv", newline="") as f:
        assert [r["trial"] for r in csv.DictReader(f)] == ["0", "1"]


def test_an_installed_distribution_adds_its_experiment_through_the_entry_point(tmp_path,
                                                                                monkeypatch):
    (tmp_path / "seambench_plugged.py").write_text(PLUGIN)
    info = tmp_path / "seambench_plugged-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: seambench-plugged\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[seambench.experiments]\nplugged = seambench_plugged:EXPERIMENT\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugged" in experiments.registered()
    assert experiments.get("plugged").name == "plugged"
    assert "plugged" not in experiments.default_run()  # it set no default_order
    assert set(experiments.default_run()) == {"hops", "journey", "fanout"}
    sys.modules.pop("seambench_plugged", None)
