"""`seambench chaos` end to end, short and bounded: every fault kind against every
dependency on the split shop, two on the monolith, and the oracle's verdict asserted for each
(nothing lost, nothing duplicated, nothing left pending). The faults are real: SIGKILLed and
SIGSTOPped process groups of the placement the run started."""
from __future__ import annotations

import csv
import json
import subprocess

import pytest

from bench.system.faults import KINDS, TARGETS
from tests.e2e.test_launcher import SEAMBENCH

SMALL = ["--profile", "smoke", "--kdf-log2", "4", "--catalog-size", "2000"]


def chaos(tmp_path, topology: str, plans: list[str]) -> dict:
    done = subprocess.run([*SEAMBENCH, "chaos", *SMALL, "--topology", topology,
                           *(a for p in plans for a in ("--plan", p)),
                           "--results", str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    [run_dir] = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert done.returncode == summary["exit_code"] == 0, done.stderr[-3000:]
    report = (run_dir / "report.md").read_text()
    assert "## Chaos: faults under load" in report and "### The oracle" in report
    for plan in plans:
        assert (run_dir / "figures" / f"chaos-{plan}.png").stat().st_size > 10_000
    return summary["experiments"]["chaos"]["placements"][topology]


def hop_errors(tmp_path, plan: str, dependency: str) -> int:
    """Hops to ``dependency`` that failed (no answer or a 5xx) in the steps of ``plan``, as
    the callers' /metrics counted them (calls.csv)."""
    [run_dir] = tmp_path.iterdir()
    with open(run_dir / "calls.csv") as f:
        return sum(int(row["count"]) for row in csv.DictReader(f)
                   if row["rung"] == plan and row["kind"] == "hop_error" and row["name"] == dependency)


def assert_nothing_lost(entry: dict, plan: str) -> None:
    oracle = entry["oracle"]
    assert oracle["ok"], (plan, oracle["problems"])
    assert oracle["writes"] > 20 and oracle["unresolved"] == 0, (plan, oracle)
    for count in ("money_lost_cents", "money_created_cents", "double_charged_keys",
                  "notifications_missing", "notifications_duplicated", "outbox_backlog"):
        assert oracle[count] == 0, (plan, count, oracle)
    # one fault window per step: one step, or two when the harness spoiled the first (late
    # sends, a busy generator) and it was measured again at the end
    assert entry["windows"] in (1, 2) and entry["ops_during"] > 0, (plan, entry)


# One plan of every fault family, every dependency targeted: 7 steps of 4 s, a fault of
# 0.6 s in each.
FAMILY_PLANS = ["crash-billing", "pause-auth", "restart-notify", "latency-search",
                "errors-billing", "reset-search", "blackhole-notify"]
# Every fault kind against every dependency: 7 x 4 steps (the nightly tier).
SPLIT_PLANS = [f"{kind}-{target}" for kind in KINDS for target in TARGETS]


def assert_split_shop_lost_nothing(placement: dict, plans: list[str]) -> None:
    for plan in plans:
        entry = placement[plan]
        assert_nothing_lost(entry, plan)
        assert entry["restarts"] == (1 if plan.startswith(("crash", "restart")) else 0), \
            (plan, entry)


def test_every_fault_family_on_the_split_shop(tmp_path):
    assert {p.split("-")[0] for p in FAMILY_PLANS} == set(KINDS)
    assert {p.split("-")[1] for p in FAMILY_PLANS} == set(TARGETS)
    placement = chaos(tmp_path, "microservices", FAMILY_PLANS)
    assert_split_shop_lost_nothing(placement, FAMILY_PLANS)
    # what the defaults promise, seen from outside
    # a paused auth stalls every call (each verifies its token) for the pause, 0.6 s here
    assert placement["pause-auth"]["latency_ms"]["during"]["max"] > 300
    assert placement["blackhole-notify"]["availability"]["during"] > 0.5  # only inbox reads fail
    assert placement["crash-billing"]["oracle"]["unknown_before"] > 0  # writes were cut off
    # the proxy answered 503s, which reached billing's callers (each is a hop error there;
    # what users saw depends on the few operations of a 0.6 s window and on the retries,
    # so availability is not asked: 0.9 of ten operations passed and failed alike)
    assert hop_errors(tmp_path, "errors-billing", "billing") > 0
    # the proxy's added latency shows in the seconds the fault overlapped
    assert placement["latency-search"]["latency_ms"]["during"]["max"] > 100


@pytest.mark.nightly
def test_every_fault_against_every_dependency_of_the_split_shop(tmp_path):
    placement = chaos(tmp_path, "microservices", SPLIT_PLANS)
    assert_split_shop_lost_nothing(placement, SPLIT_PLANS)
    assert placement["crash-auth"]["availability"]["during"] < 0.5  # everything needs auth
    assert placement["crash-notify"]["availability"]["during"] > 0.5  # only inbox reads fail


def test_faults_on_the_monolith_hit_the_whole_shop_and_lose_nothing(tmp_path):
    plans = ["crash-billing", "latency-search"]
    placement = chaos(tmp_path, "monolith", plans)
    assert_nothing_lost(placement["crash-billing"], "crash-billing")
    assert placement["crash-billing"]["availability"]["during"] < 0.5
    # no hop into search in the monolith: the network fault is said not to apply
    assert placement["latency-search"]["windows"] == 0
    assert placement["latency-search"]["not_applied"] == 1
    assert placement["latency-search"]["oracle"]["ok"]
    # the gate: the same run with a double credit planted in one step's verdict is rebuilt
    # with `seambench report`, and the run's exit code becomes 4, the problem said first
    [run_dir] = tmp_path.iterdir()
    [details] = sorted(run_dir.glob("raw/chaos-monolith-crash-billing-t*/chaos.json"))[:1]
    doc = json.loads(details.read_text())
    doc["oracle"].update(ok=False, money_created_cents=500,
                         problems=["user 1: 500 cents credited twice (planted)"])
    details.write_text(json.dumps(doc))
    subprocess.run([*SEAMBENCH, "report", str(run_dir)], check=True, capture_output=True,
                   timeout=120)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["exit_code"] == 1  # a finding (bench/exitcodes.py)
    assert "500 cents credited twice (planted)" in summary["warnings"][0]
