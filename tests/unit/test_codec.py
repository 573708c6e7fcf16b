"""One codec for the harness's typed records: the manifest's configuration and each
experiment's settings come back as the types that were written."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.experiments import get
from bench.results.codec import decode, encode
from bench.results.reader import load_run
from bench.run import RunConfig, cpu_plan
from bench.system.launcher import LaunchSettings
from shop.placement import load_topology
from shop.search.leaves import LeafDelay

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("profile", ["quick", "full", "smoke"])
def test_a_run_config_comes_back_from_its_manifest(profile):
    launch = replace(LaunchSettings(), cpus=(1,), workers=2,
                     leaf_delays={"slow": LeafDelay(1.0, 0.01, 30.0)})
    config = RunConfig.build(profile, [load_topology("monolith"), load_topology("hybrid")],
                             launch, cpu_plan({0, 1}), ("hops", "journey", "fanout", "chaos"),
                             overrides={"journey": {"rates": (10.0, 20.0)}}, seed=7,
                             comparisons=(("hybrid", "monolith"),))
    written = json.loads(json.dumps(config.describe()))  # what manifest.json holds
    assert RunConfig.from_manifest(written) == config


def test_recorded_settings_are_read_back_as_their_type(tmp_path):
    run = load_run(FIXTURES / "run-smoke")
    for name in run.experiments:
        experiment = get(name)
        typed = run.settings_of(experiment)
        assert type(typed) is type(experiment.settings("smoke"))
        recorded = json.loads(json.dumps(run.settings(name)))
        # a field added since the run was recorded takes its default
        assert {k: v for k, v in encode(typed).items() if k in recorded} == recorded


def test_a_run_older_than_its_settings_takes_them_from_its_profile():
    run = load_run(FIXTURES / "run-schema1")
    assert run.settings("hops") == {}  # schema 1 recorded none
    profile = run.config["profile"]["name"]
    assert run.settings_of(get("hops")) == get("hops").settings(profile)


def test_what_does_not_fit_is_a_value_error_naming_the_field():
    with pytest.raises(ValueError, match=r"not a LaunchSettings: .*workers"):
        decode(LaunchSettings, {"workers": "many"})
    hops = get("hops").settings("quick")
    assert decode(type(hops), {"ks": [1, 2]}, hops) == replace(hops, ks=(1, 2))


def test_an_invalid_reason_keeps_its_code_through_steps_csv():
    from bench.results.model import ERRORS, LATE_SENDS, UNKNOWN, Invalid, StepKey, StepResult
    step = StepResult(StepKey("e", "p", "r1", 0), 1.0, 1,
                      invalid_reasons=[Invalid(ERRORS, "error rate 2.0% above the 1% limit"),
                                       Invalid(LATE_SENDS, "sends were late: p99 12000 us")])
    row = json.loads(json.dumps(step.to_row()))
    back = StepResult.from_row(row)
    assert [(r.code, r.text) for r in back.invalid_reasons] == \
        [(r.code, r.text) for r in step.invalid_reasons]
    assert back.invalid_reasons[0] == "error rate 2.0% above the 1% limit"  # reads as its text
    del row["invalid_codes"]  # a run written before codes: the text, code unknown
    assert [r.code for r in StepResult.from_row(row).invalid_reasons] == [UNKNOWN, UNKNOWN]


def test_a_reason_with_a_semicolon_of_its_own_keeps_every_reason_its_code():
    """A run once wrote "sends were late ...; the hypervisor took ..." and read back three
    reasons for two codes: every code became unknown and a spoiled step counted as the
    system's. A reason's own "; " is written ", "."""
    from bench.results.model import LATE_SENDS, NOT_STEADY, Invalid, StepKey, StepResult
    step = StepResult(StepKey("e", "p", "r1", 0), 1.0, 1,
                      invalid_reasons=[Invalid(LATE_SENDS, "sends were late; the hypervisor took 9 ms"),
                                       Invalid(NOT_STEADY, "not steady")])
    back = StepResult.from_row(json.loads(json.dumps(step.to_row())))
    assert [r.code for r in back.invalid_reasons] == [LATE_SENDS, NOT_STEADY]
    assert back.spoiled
