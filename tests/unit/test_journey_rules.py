"""The journey's rules of evidence: which trials count, what a placement sustains, where the
headline compares, and that the harness's failures are never charged to the system."""
from bench.experiments.journey.analysis import (capacity, headline_rung, standing_trials,
                                                throughput_at_objective)
from bench.results.model import LATE_SENDS, NOT_STEADY, Estimate, Invalid, StepKey, StepResult

LADDER = [("r50", 50.0), ("r120", 120.0), ("r200", 200.0)]


def step(placement: str, trial: int, *codes: str) -> StepResult:
    return StepResult(StepKey("journey", placement, "r50", trial), 50.0, 1,
                      invalid_reasons=[Invalid(c, c) for c in codes])


def test_a_trial_the_harness_spoiled_in_one_placement_stands_in_none():
    by = {"monolith": [step("monolith", 0), step("monolith", 1, LATE_SENDS), step("monolith", 2)],
          "microservices": [step("microservices", 0), step("microservices", 1),
                            step("microservices", 2, NOT_STEADY)]}
    # trial 1: late sends in the monolith: not measured in either; trial 2: the split shop was
    # not steady, which is the system's doing: the trial stands (and the split shop failed it)
    assert standing_trials(by) == [0, 2]


def entry(sustained: bool, standing: int = 3, p99_ms: tuple[float, float, float] = (10, 8, 12),
          invalid: list[str] | None = None) -> dict:
    value, low, high = (x * 1000 for x in p99_ms)
    return {"rate": 0, "trials": 3, "valid_trials": 3 if sustained else 2, "standing_trials": standing,
            "sustained": sustained, "invalid": invalid or [], "error_rate": 0.0,
            "latency": {"p99": Estimate(value, low, high, samples=5000).to_json()}}


def test_the_headline_rate_leaves_a_margin_below_what_every_placement_sustained():
    both = {p: {"r50": entry(True), "r120": entry(True), "r200": entry(True)} for p in ("a", "b")}
    assert headline_rung(both, LADDER)[0] == "r50"  # 120 * 2 > 200: 120 has no margin
    one_short = {"a": both["a"], "b": {**both["b"], "r200": entry(False)}}
    assert headline_rung(one_short, LADDER) == ("r50", "every placement sustained 120 req/s, "
                                                       "at least 2x this rate")
    low_only = {"a": both["a"], "b": {**both["b"], "r120": entry(False), "r200": entry(False)}}
    label, why = headline_rung(low_only, LADDER)
    assert label == "r50" and why.startswith("no margin shown")
    neither = {p: {lab: entry(False) for lab, _ in LADDER} for p in ("a", "b")}
    assert headline_rung(neither, LADDER)[0] is None


def test_capacity_is_the_highest_rate_sustained_with_the_reason_above_it():
    rungs = {"r50": entry(True), "r120": entry(True),
             "r200": entry(False, invalid=["trial 2: not steady: the median latency rose"])}
    found = capacity(rungs, LADDER)
    assert found["rate"] == 120 and "200 req/s not sustained: trial 2: not steady" in found["text"]
    assert capacity({lab: entry(True) for lab, _ in LADDER}, LADDER)["text"].startswith("at least 200")


def test_a_rung_the_harness_spoiled_is_not_measured_never_missed():
    rungs = {"r50": entry(True, standing=0), "r120": entry(True), "r200": entry(True, p99_ms=(90, 80, 99))}
    found = throughput_at_objective(rungs, LADDER, 50_000)
    assert [r["verdict"] for r in found["per_rate"]] == ["not measured", "meets", "misses"]
    assert found["highest_meeting_rate"] == 120 and found["verdict"] == "meets"
    only_spoiled = throughput_at_objective({"r50": entry(True, standing=0)}, LADDER, 50_000)
    assert only_spoiled["verdict"] == "not measured"


def test_a_rung_not_sustained_misses_whatever_its_p99():
    rungs = {"r50": entry(False, p99_ms=(10, 8, 12))}
    assert throughput_at_objective(rungs, LADDER, 50_000)["per_rate"][0]["verdict"] == "misses"
    errors = {"r50": {**entry(True), "error_rate": 0.02}}
    assert throughput_at_objective(errors, LADDER, 50_000)["per_rate"][0]["verdict"] == "misses"


def test_capacity_charges_the_system_only_with_its_own_failures():
    """The reason a rate was not sustained names what the system failed in the trials that
    count; trials the harness spoiled are named apart, as not measured, never as the cause."""
    failing = {**entry(False, invalid=["trial 1: sends were late: p99 2,553 us",
                                       "trial 5: not steady: the median latency rose"]),
               "failed": ["trial 5: not steady: the median latency rose"],
               "not_measured": ["trial 1"]}
    text = capacity({"r50": entry(True), "r120": failing}, LADDER[:2])["text"]
    assert text.startswith("50 req/s (120 req/s not sustained: trial 5: not steady")
    assert "sends were late" not in text and text.endswith("(not measured: trial 1))")
