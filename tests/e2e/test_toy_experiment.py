"""A new experiment is one module plus its registration: a toy one-rung experiment, defined
here and registered from the test, runs through the harness core into summary.json and the
report without any core module knowing of it."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import experiments
from bench.render.document import Block, Heading, Paragraph
from bench.experiments import Analysis, Experiment, Rung, RunSession, StepLoad
from bench.system.launcher import LaunchSettings
from bench.load.generator import TARGET
from bench.results.model import Estimate, Headline
from bench.results.reader import RunData
from bench.results.model import EXIT_OK
from bench.run import RunConfig, cpu_plan, execute
from shop.placement import load_topology
from shop.search.service import SearchSettings


@dataclass(frozen=True)
class ToySettings:
    rate: float = 40.0
    warmup_s: float = 0.3
    duration_s: float = 1.0


class Toy(Experiment):
    name = "toy"
    title = "health checks at one rate"

    def settings(self, profile: str, overrides: Mapping[str, Any] | None = None) -> ToySettings:
        return replace(ToySettings(), **dict(overrides or {}))

    def rungs(self, settings: ToySettings) -> list[Rung]:
        return [Rung("health", settings.rate)]

    def load(self, session: RunSession, settings: ToySettings, rung: Rung, placement: str) -> StepLoad:
        return StepLoad(TARGET, settings.warmup_s, settings.duration_s, "constant",
                        {"path": "/healthz", "method": "GET"})

    def after_step(self, session, settings, step, result) -> None:
        step.extra["toy_seen"] = result.completed

    def analyse(self, run: RunData, resamples: int, seed: int) -> Analysis:
        steps = run.steps_of(self.name, valid_only=True)
        p50 = float(run.histogram_of(steps).get_value_at_percentile(50)) if steps else None
        return Analysis({"valid_steps": len(steps), "p50_us": p50,
                         "seen": sum(int(s.extra["toy_seen"]) for s in steps)},
                        [Headline("toy health p50", "latency", Estimate(p50))],
                        rests_on_nothing=not steps)

    def report(self, run: RunData, result: Mapping[str, Any], figures_dir: Path) -> list[Block]:
        return [Heading("Toy experiment"), Paragraph(f"{result['valid_steps']} valid toy steps")]


def test_a_registered_toy_experiment_runs_through_the_core(tmp_path):
    experiments.register(Toy())
    settings = replace(LaunchSettings(), scrypt_n=2**4,
                       search=replace(SearchSettings(), catalog_size=2000))
    config = RunConfig.build("smoke", [load_topology("monolith")], settings, cpu_plan(),
                             experiments=("toy",), trials=2)
    outcome = execute(config, tmp_path)
    assert outcome.complete and outcome.summary is not None, outcome.reason
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    toy = summary["experiments"]["toy"]
    assert list(summary["experiments"]) == ["toy"]
    assert toy["valid_steps"] + len(summary["invalid_steps"]) == 2
    if toy["valid_steps"]:  # the shop answers /healthz: it took some µs, and was seen
        assert toy["p50_us"] > 0 and toy["seen"] > 0 and outcome.exit_code == EXIT_OK
    [row] = [h for h in summary["headlines"] if h["label"] == "toy health p50"]
    assert row["kind"] == "latency"
    steps = [s for s in summary["steps"] if s["experiment"] == "toy"]
    assert [s["trial"] for s in steps] == [0, 1] and all(s["rung"] == "health" for s in steps)
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["config"]["experiments"] == {"toy": {"rate": 40.0, "warmup_s": 0.3,
                                                         "duration_s": 1.0}}
    assert "Toy experiment" in (outcome.run_dir / "report.md").read_text()
