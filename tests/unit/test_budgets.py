"""``seambench check``: the budgets file, the verdicts, the refusals, JUnit XML and the job
summary, on doctored copies of the committed smoke run (never written in place) and on
synthetic summaries; and the calibration of the growth test on seeded synthetic trials.
No load is generated; limits are set from the run's own figures, never hard-coded."""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import ttest_ind

from bench.budgets import verdicts as v
from bench.budgets.evaluate import Allowances, Unusable, evaluate
from bench.budgets.metrics import RunView
from bench.budgets.spec import BudgetFileError, parse_budgets
from bench.cli import cli
from bench.results.model import Estimate, RunSummary
from bench.results.store import SUMMARY
from bench.results.summary import summarize

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "run-smoke"
SEAMBENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


# -- doctoring copies of the fixture run --------------------------------------------------

def edit_steps(run_dir: Path, change: Callable[[dict[str, str]], None]) -> None:
    path = run_dir / "steps.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        change(row)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def write_summary(run_dir: Path) -> dict[str, Any]:
    doc = summarize(run_dir).to_json()
    (run_dir / SUMMARY).write_text(json.dumps(doc))
    return doc


def make_valid(row: dict[str, str]) -> None:
    row.update(valid="True", invalid_reasons="")


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory) -> Path:
    """The smoke run with every step marked valid, and its summary.json written once."""
    run_dir = tmp_path_factory.mktemp("fixture") / "valid"
    shutil.copytree(FIXTURE, run_dir)
    edit_steps(run_dir, make_valid)
    write_summary(run_dir)
    return run_dir


@pytest.fixture
def run(valid_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(valid_run, tmp_path / "run")
    return tmp_path / "run"


def summary_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / SUMMARY).read_text())


def journey_p50_ms(run_dir: Path, placement: str) -> Estimate:
    doc = summary_of(run_dir)["experiments"]["journey"]
    rung = doc["headline_rung"]
    assert rung is not None, "the doctored fixture has a headline rung"
    e = Estimate.from_json(doc["placements"][placement][rung]["latency"]["p50"])
    assert e.ci95 is not None and e.low < e.value < e.high
    return Estimate(e.value / 1000, e.low / 1000, e.high / 1000, e.samples)


def budgets(tmp_path: Path, text: str, name: str = "budgets.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def journey_ceiling(placement: str, p50_ms: float, rung: str = "headline") -> str:
    return (f'[[budget]]\nexperiment = "journey"\nplacement = "{placement}"\nrung = "{rung}"\n'
            f"[budget.ceiling]\np50_ms = {p50_ms!r}\n")


def check(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["check", *args], env=env)


def verdict_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("journey", "hops"))]


# -- the budgets file -----------------------------------------------------------------------

DOCS_EXAMPLE = re.compile(r"<!-- budgets example -->\s*```toml\n(.*?)```", re.S)


def test_the_documented_example_and_the_ci_file_parse():
    example = DOCS_EXAMPLE.search((ROOT / "docs" / "budgets.md").read_text())
    assert example, "docs/budgets.md has the worked budgets example"
    parsed = parse_budgets(example.group(1), "docs/budgets.md")
    kinds = {b.limit.kind for b in parsed.budgets}
    assert kinds == {"ceiling", "floor", "calibrated", "ratio", "growth"}
    ci = parse_budgets((ROOT / "budgets" / "ci.toml").read_text(), "budgets/ci.toml")
    # what scripts/ci-gate measures: this commit's split shop beside its parent's, so every
    # growth is paired within the run (no --baseline run), and nothing names another placement
    assert ci.budgets and all(b.placement == "microservices" for b in ci.budgets)
    growth = [b for b in ci.budgets if b.limit.kind == "growth"]
    assert growth and all(b.limit.versus == "microservices@base" for b in growth)
    assert {b.limit.kind for b in ci.budgets} == {"growth", "calibrated", "ceiling"}


def test_lists_expand_to_one_budget_per_placement_request_and_limit():
    parsed = parse_budgets('[[budget]]\nexperiment = "journey"\n'
                           'placement = ["monolith", "microservices"]\n'
                           'request = ["all", "checkout"]\n'
                           '[budget.ceiling]\np99_ms = 20\nerror_rate = 0.01\n')
    labels = [b.label for b in parsed.budgets]
    # error_rate is over all requests: only with request "all"
    assert len(labels) == 2 * (2 + 1)
    assert "journey microservices checkout @ headline: p99 <= 20 ms" in labels
    assert "journey monolith @ headline: error rate <= 1%" in labels


MALFORMED = [
    # (text, line, the key or words the message must name)
    ('[[budget]\nexperiment = "journey"\n', 1, "[[budget]"),
    ('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n[budget.ceiling]\n'
     'p99_ms = "fast"\n', 5, "budget[1].ceiling.p99_ms"),
    ('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n[budget.ceiling]\np99_ms = 3\n'
     '\n[[budget]]\nplacement = "monolith"\n[budget.ceiling]\np50_ms = 1\n', 7,
     "budget[2]: missing the key 'experiment'"),
    ('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n[budget.ceiling]\n'
     'p99.9_ms = 3\n', 5, '"p99.9_ms"'),
    ('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n[budget.ceiling]\n'
     'p95_ms = 3\n', 5, "budget[1].ceiling.p95_ms: unknown metric"),
    ('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\nrequest = "chekout"\n'
     '[budget.ceiling]\np99_ms = 3\n', 4, "budget[1].request"),
    ('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n[budget.growth]\n'
     'p99_ms = 15\n', 5, "growth is a fraction"),
    ('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n[budget.calibrated]\n'
     'p99_ms = 15\n', 4, "missing the key 'of'"),
    ('[[budget]]\nexperiment = "hops"\nplacement = "monolith"\n[budget.ceiling]\n'
     'error_rate = 0.1\n', 5, "not a figure of the hops experiment"),
    ('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n', 1, "no limits"),
    ('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n[budget.ceiling]\n'
     'p99_ms = 3\nthroughput_rps = 100\n', 6, "cannot be a ceiling limit"),
]


@pytest.mark.parametrize("text,line,needle", MALFORMED)
def test_a_malformed_file_names_its_line_and_key(text, line, needle):
    with pytest.raises(BudgetFileError) as raised:
        parse_budgets(text, "b.toml")
    message = str(raised.value)
    assert message.startswith(f"b.toml:{line}:"), message
    assert needle in message, message
    assert "\n" not in message


def test_a_malformed_file_is_exit_2_with_one_line(run, tmp_path):
    path = budgets(tmp_path, MALFORMED[1][0])
    done = subprocess.run([*SEAMBENCH, "check", str(run), "--budgets", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert f"{path}:5:" in line and "ceiling.p99_ms" in line


# -- verdicts on the fixture ----------------------------------------------------------------

def test_pass_breach_and_noisy_follow_the_interval(run, tmp_path):
    e = journey_p50_ms(run, "microservices")
    cases = {"pass": (e.high * 1.5, 0), "breach": (e.low * 0.5, 1), "noisy": (e.value, 0)}
    for verdict, (limit, code) in cases.items():
        done = check(str(run), "--budgets", str(budgets(tmp_path, journey_ceiling(
            "microservices", limit), f"{verdict}.toml")))
        assert done.exit_code == code, done.output
        [line] = verdict_lines(done.stdout)
        assert line.split("  ")[-1].strip().lower().startswith(verdict), line
        assert f"{e.value:.2f} ms" in line  # the measured value is printed, with its interval
    noisy = verdict_lines(check(str(run), "--budgets", str(tmp_path / "noisy.toml")).stdout)[0]
    assert "within the limit but too noisy to tell" in noisy or "over the limit" in noisy
    assert re.search(r"(about \d+|more than \d+) trials per placement", noisy), noisy


def test_check_writes_nothing_into_the_runs(run, tmp_path):
    baseline = tmp_path / "baseline"
    shutil.copytree(run, baseline)
    (run / SUMMARY).unlink()  # computed in memory, not written back
    before = {p: p.stat().st_mtime_ns for d in (run, baseline) for p in d.rglob("*")}
    path = budgets(tmp_path, '[[budget]]\nexperiment = "journey"\nplacement = "microservices"\n'
                             "[budget.growth]\np50_ms = 0.5\n")
    assert check(str(run), "--budgets", str(path), "--baseline", str(baseline)).exit_code in (0, 1)
    assert {p: p.stat().st_mtime_ns for d in (run, baseline) for p in d.rglob("*")} == before


def test_verdicts_are_ordered_by_the_interval_not_the_point():
    e = Estimate(10.0, 8.0, 12.0, samples=3)
    assert v.ceiling(e, 12.5, None).verdict == v.PASS
    assert v.ceiling(e, 7.5, None).verdict == v.BREACH
    assert v.ceiling(e, 9.0, None).verdict == v.NOISY  # the point is over, the interval is not
    assert v.ceiling(e, 11.0, None).verdict == v.NOISY
    assert v.floor(e, 7.5, None).verdict == v.PASS and v.floor(e, 12.5, None).verdict == v.BREACH
    assert v.ceiling(Estimate(10.0), 100.0, None).verdict == v.NOISY  # no interval, no verdict


def test_missing_metrics_are_said_and_do_not_fail_unless_strict(run, tmp_path):
    edit_json(run / SUMMARY, lambda doc: doc["experiments"]["journey"]["placements"]["monolith"]
              [doc["experiments"]["journey"]["headline_rung"]]["latency"]["p99"]
              .update(supported=False, samples=91))
    text = (journey_ceiling("hybrid", 5.0)
            + '[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n'
              '[budget.ceiling]\np99_ms = 50\n'
            + '[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n'
              '[budget.growth]\np50_ms = 0.1\n')
    path = budgets(tmp_path, text)
    done = check(str(run), "--budgets", str(path))
    assert done.exit_code == 0, done.output
    lines = verdict_lines(done.stdout)
    assert len(lines) == 3 and all("missing" in line for line in lines)
    assert "'hybrid' is not in this run" in lines[0]
    assert "too few samples for p99: 91 of the 1,000 it needs" in lines[1]
    assert "no --baseline run" in lines[2]
    assert "3 missing" in done.stdout
    assert check(str(run), "--budgets", str(path), "--strict").exit_code == 3  # undecided
    # A gate that fails closed: strict, each undecided budget is a JUnit failure naming it
    junit = tmp_path / "junit.xml"
    check(str(run), "--budgets", str(path), "--strict", "--junit", str(junit))
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "3" and suite.get("skipped") == "0"
    assert [f.get("type") for f in suite.iter("failure")] == ["missing"] * 3
    check(str(run), "--budgets", str(path), "--junit", str(junit))
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("skipped") == "3"


def test_ratio_and_calibrated_budgets_read_paired_figures(run, tmp_path):
    summary = summary_of(run)
    rung = summary["experiments"]["journey"]["headline_rung"]
    pair = summary["experiments"]["journey"]["ratios"]["microservices/monolith"][rung]["p50"]
    low, high = pair["ci95"]
    text = ('[[budget]]\nexperiment = "journey"\nplacement = "microservices"\n'
            f"[budget.ratio]\np50_ms = {high * 1.2!r}\n"
            '[[budget]]\nexperiment = "journey"\nplacement = "microservices"\n'
            f'[budget.ratio]\nversus = "monolith"\ncpu_ms_per_request = 0.01\n'
            '[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n'
            '[budget.calibrated]\nof = "http_p50"\np50_ms = 1000\n')
    done = check(str(run), "--budgets", str(budgets(tmp_path, text)))
    assert done.exit_code == 1, done.output
    ratio, cpu, calibrated = verdict_lines(done.stdout)
    assert f"{pair['value']:.2f}x monolith ({low:.2f}–{high:.2f})" in ratio and ratio.endswith("pass")
    assert "BREACH" in cpu
    assert "x http_p50" in calibrated and calibrated.endswith("pass")


# -- refusals -------------------------------------------------------------------------------

def test_an_incomplete_run_is_refused_unless_allowed(run, tmp_path):
    for name in ("manifest.json", SUMMARY):
        edit_json(run / name, lambda doc: doc.update(complete=False))
    path = budgets(tmp_path, journey_ceiling("microservices", 1e6))
    done = check(str(run), "--budgets", str(path))
    assert done.exit_code == 2
    assert "INCOMPLETE" in done.output and "--allow-incomplete" in done.output
    allowed = check(str(run), "--budgets", str(path), "--allow-incomplete")
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stdout.startswith("warning: ") and "INCOMPLETE" in allowed.stdout


def test_an_invalid_step_under_a_budget_is_refused_and_one_elsewhere_is_not(run, tmp_path):
    rung = summary_of(run)["experiments"]["journey"]["headline_rung"]
    reason = "sends were late (doctored for the test)"

    def spoil(row: dict[str, str]) -> None:
        if (row["experiment"], row["placement"], row["rung"], row["trial"]) == \
                ("journey", "microservices", rung, "0"):
            row.update(valid="False", invalid_reasons=reason)
    edit_steps(run, spoil)
    write_summary(run)
    under = budgets(tmp_path, journey_ceiling("microservices", 1e6, rung), "under.toml")
    done = check(str(run), "--budgets", str(under))
    assert done.exit_code == 2
    assert f"journey microservices {rung} trial 1 ({reason})" in done.output
    assert "--allow-invalid" in done.output
    elsewhere = budgets(tmp_path, '[[budget]]\nexperiment = "hops"\nplacement = "microservices"\n'
                                  "[budget.ceiling]\ncpu_ms_per_request = 1e6\n", "elsewhere.toml")
    assert check(str(run), "--budgets", str(elsewhere)).exit_code == 0
    allowed = check(str(run), "--budgets", str(under), "--allow-invalid")
    assert allowed.exit_code == 0, allowed.output
    [line] = verdict_lines(allowed.stdout)
    assert "1 invalid step(s) left out" in line


def test_an_error_rate_ceiling_counts_the_steps_its_errors_made_invalid(run, tmp_path):
    """The split shop answering 5% errors in every step at the headline rung: each step is
    invalid for it (over 1%), and the 1% ceiling must breach, not go "missing" for want of a
    valid step (pooled over valid steps only, it could never fail). 5%, because the smoke
    fixture has ~180 requests a rung; the quick run's 2,400 at 60 req/s resolve 2%."""
    rung = summary_of(run)["experiments"]["journey"]["headline_rung"]

    def erring(row: dict[str, str]) -> None:
        if (row["experiment"], row["placement"], row["rung"]) == ("journey", "microservices", rung):
            row.update(valid="False", errors=str(max(1, int(row["scheduled"]) // 20)),
                       invalid_reasons="error rate 5.0% over the 1% limit (doctored)")
    edit_steps(run, erring)
    write_summary(run)
    limit = budgets(tmp_path, f'[[budget]]\nexperiment = "journey"\nplacement = "microservices"\n'
                              f'rung = "{rung}"\n[budget.ceiling]\nerror_rate = 0.01\n')
    for flags in ((), ("--allow-invalid",)):  # nothing left out, so nothing to refuse
        done = check(str(run), "--budgets", str(limit), *flags)
        [line] = verdict_lines(done.stdout)
        assert done.exit_code == 1 and "BREACH" in line and "left out" not in line, done.output


@pytest.mark.parametrize("where,change,needle", [
    ("environment", lambda env: env.update(cpu_count=64), "cpu_count"),
    ("environment", lambda env: env.update(cpu_model="Another CPU"), "cpu_model"),
    ("config", lambda config: config["launch"].update(threads=16), "config.launch.threads"),
])
def test_a_baseline_from_another_environment_is_refused_unless_allowed(run, tmp_path, where,
                                                                       change, needle):
    baseline = tmp_path / "baseline"
    shutil.copytree(run, baseline)
    if where == "environment":
        for name in ("manifest.json", SUMMARY):
            edit_json(baseline / name, lambda doc: change(doc["environment"]))
    else:
        edit_json(baseline / "manifest.json", lambda doc: change(doc["config"]))
    text = ('[[budget]]\nexperiment = "journey"\nplacement = "microservices"\n'
            "[budget.growth]\np50_ms = 0.5\n")
    path = budgets(tmp_path, text)
    done = check(str(run), "--budgets", str(path), "--baseline", str(baseline))
    assert done.exit_code == 2
    assert needle in done.output and "--allow-env-mismatch" in done.output
    allowed = check(str(run), "--budgets", str(path), "--baseline", str(baseline),
                    "--allow-env-mismatch")
    assert allowed.exit_code in (0, 1), allowed.output
    assert needle in allowed.stdout.splitlines()[0]
    same = tmp_path / "same"
    shutil.copytree(run, same)  # the same environment, another seed: compared, no refusal
    edit_json(same / "manifest.json", lambda doc: doc["config"].update(seed=2))
    assert check(str(run), "--budgets", str(path), "--baseline", str(same)).exit_code in (0, 1)


def test_a_topology_key_only_the_newer_harness_writes_is_no_difference(run, tmp_path):
    """A baseline written before topologies had a ``scale`` is compared, not refused; a
    real change inside one of its topologies still is."""
    baseline = tmp_path / "baseline"
    shutil.copytree(run, baseline)
    edit_json(run / "manifest.json",
              lambda doc: [t.update(scale={}) for t in doc["config"]["topologies"]])
    path = budgets(tmp_path, '[[budget]]\nexperiment = "journey"\nplacement = "microservices"\n'
                             "[budget.growth]\np50_ms = 0.5\n")
    assert check(str(run), "--budgets", str(path), "--baseline", str(baseline)).exit_code in (0, 1)
    edit_json(baseline / "manifest.json",
              lambda doc: doc["config"]["topologies"][1].update(gateway=False))
    done = check(str(run), "--budgets", str(path), "--baseline", str(baseline))
    assert done.exit_code == 2 and "config.topologies[1].gateway" in done.output


# -- JUnit XML and the job summary ----------------------------------------------------------

# Jenkins xUnit plugin's junit-10.xsd (the schema GitHub/GitLab reporters follow): required
# and allowed attributes, and allowed children, of each element.
SCHEMA = {
    "testsuites": (set(), {"name", "time", "tests", "failures", "errors"}, {"testsuite"}),
    "testsuite": ({"name", "tests", "failures", "errors"},
                  {"group", "time", "skipped", "timestamp", "hostname", "id", "package", "file",
                   "log", "url"}, {"testsuite", "properties", "testcase", "system-out", "system-err"}),
    "testcase": ({"name"}, {"time", "classname", "group"},
                 {"skipped", "error", "failure", "rerunFailure", "rerunError", "flakyFailure",
                  "flakyError", "system-out", "system-err"}),
    "failure": (set(), {"type", "message"}, set()),
    "error": (set(), {"type", "message"}, set()),
    "skipped": (set(), {"type", "message"}, set()),
    "system-out": (set(), set(), set()),
}
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?")


def assert_valid_junit(xml_text: str) -> ET.Element:
    """Structure per junit-10.xsd, plus what the Apache Ant schema (windyroad JUnit.xsd)
    also requires where the two agree (timestamp, hostname, time; classname and time on a
    testcase; the type of a failure), and counts that match the testcases."""
    root = ET.fromstring(xml_text)
    assert root.tag == "testsuites"

    def walk(element: ET.Element) -> None:
        required, optional, children = SCHEMA[element.tag]
        attributes = set(element.attrib)
        assert required <= attributes, (element.tag, required - attributes)
        assert attributes <= required | optional, (element.tag, attributes - required - optional)
        for child in element:
            assert child.tag in children, (element.tag, child.tag)
            walk(child)
        if "time" in element.attrib:
            assert SUREFIRE_TIME.fullmatch(element.get("time")), element.get("time")
    walk(root)
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases)
    assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
    assert int(suite.get("errors")) == sum(c.find("error") is not None for c in cases)
    assert int(suite.get("skipped")) == sum(c.find("skipped") is not None for c in cases)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp"))
    assert suite.get("hostname")
    for case in cases:
        assert case.get("classname") and case.get("time") is not None
        for outcome in ("failure", "error"):
            if case.find(outcome) is not None:
                assert case.find(outcome).get("type") and case.find(outcome).get("message")
    return suite


def test_junit_has_one_testcase_per_budget_and_a_failure_per_breach(run, tmp_path):
    e = journey_p50_ms(run, "microservices")
    text = (journey_ceiling("microservices", e.high * 2) + journey_ceiling("microservices", e.low / 2)
            + journey_ceiling("microservices", e.value) + journey_ceiling("hybrid", 1.0))
    junit = tmp_path / "out" / "junit.xml"
    done = check(str(run), "--budgets", str(budgets(tmp_path, text)), "--junit", str(junit))
    assert done.exit_code == 1
    suite = assert_valid_junit(junit.read_text())
    cases = suite.findall("testcase")
    assert len(cases) == 4
    outcomes = [next((c.tag for c in case if c.tag != "system-out"), "pass") for case in cases]
    assert outcomes == ["pass", "failure", "skipped", "skipped"]
    assert cases[1].find("failure").get("message").startswith("measured ")
    assert "too noisy to tell" in cases[2].find("skipped").get("message")
    assert "not in this run" in cases[3].find("skipped").get("message")
    assert cases[0].get("name").startswith("journey microservices @ headline: p50 <= ")


def test_unusable_input_writes_a_junit_error_and_the_summary(run, tmp_path):
    junit, summary = tmp_path / "junit.xml", tmp_path / "step-summary.md"
    path = budgets(tmp_path, MALFORMED[1][0])
    done = check(str(run), "--budgets", str(path), "--junit", str(junit),
                 env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.exit_code == 2
    suite = assert_valid_junit(junit.read_text())
    error = suite.find("testcase").find("error")
    assert error is not None and "ceiling.p99_ms" in error.get("message")
    assert "unusable input" in summary.read_text()


def test_the_markdown_summary_is_appended_when_github_step_summary_is_set(run, tmp_path):
    e = journey_p50_ms(run, "microservices")
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    path = budgets(tmp_path, journey_ceiling("microservices", e.low / 2))
    done = check(str(run), "--budgets", str(path), env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.exit_code == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, not replaced
    assert "## seambench check: breach" in text
    assert "| budget | measured (95% CI) | limit | verdict |" in text and "BREACH" in text
    assert check(str(run), "--budgets", str(path)).exit_code == 1  # unset: nothing written
    assert summary.read_text() == text
    markdown = tmp_path / "budgets.md"
    assert check(str(run), "--budgets", str(path), "--markdown", str(markdown)).exit_code == 1
    assert markdown.read_text() == text[len("earlier step\n"):-1]


def test_the_example_workflow_gates_on_budgets_and_chaos_and_keeps_the_results():
    workflow = (ROOT / "docs" / "github-actions.yml").read_text()
    for needle in ("actions/setup-python", "fetch-depth: 0", "scripts/ci-gate",
                   "git merge-base", "seambench chaos", "actions/upload-artifact",
                   "path: results/", "GITHUB_STEP_SUMMARY"):
        assert needle in workflow, needle
    gate = (ROOT / "scripts" / "ci-gate").read_text()
    for needle in ("--baseline-ref", "--budgets \"$budgets\" --strict", "--junit"):
        assert needle in gate, needle


# -- synthetic runs: growth, the Welch interval, trials needed, calibration -----------------

PER_TRIAL_SAMPLES = 2000  # requests per trial behind each per-trial p99 (full profile, 100/s)


def synthetic(run_id: str, p99_by_trial: dict[str, list[float]],
              environment: dict[str, Any] | None = None) -> RunSummary:
    """A run with one journey rung whose per-trial p99s (µs) are given per placement."""
    placements, steps = {}, []
    for placement, values in p99_by_trial.items():
        pooled = float(np.exp(np.mean(np.log(values))))
        placements[placement] = {"r100": {
            "rate": 100.0, "trials": len(values), "valid_trials": len(values),
            "latency": {"p99": Estimate(pooled, min(values), max(values),
                                        samples=PER_TRIAL_SAMPLES * len(values)).to_json()},
            "by_trial": {"p99": {str(t): x for t, x in enumerate(values)}}}}
        steps += [{"experiment": "journey", "placement": placement, "rung": "r100", "trial": t,
                   "valid": True, "invalid_reasons": ""} for t in range(len(values))]
    journey = {"placements": placements, "ratios": {}, "headline_rung": "r100",
               "throughput_at_objective": {}, "objective_p99_ms": 50.0}
    return RunSummary(run_id, True, list(p99_by_trial), "full", len(next(iter(p99_by_trial.values()))),
                      1, environment or {"cpu_model": "x", "cpu_count": 2}, "", steps,
                      {"journey": journey}, [], [], [])


def growth_file(limit: float, versus: str | None = None) -> Any:
    versus_line = f'versus = "{versus}"\n' if versus else ""
    placement = "candidate" if versus else "monolith"
    return parse_budgets(f'[[budget]]\nexperiment = "journey"\nplacement = "{placement}"\n'
                         f"[budget.growth]\n{versus_line}p99_ms = {limit!r}\n")


def verdict_of(check_result) -> Any:
    [result] = check_result.results
    return result


def test_growth_against_a_baseline_run_is_welch_over_per_trial_logs():
    old = [7000.0, 7300.0, 6900.0, 7150.0, 7050.0]
    new = [x * 1.5 for x in (7100.0, 6950.0, 7200.0, 7000.0, 7250.0)]
    result = verdict_of(evaluate(growth_file(0.15), RunView(synthetic("new", {"monolith": new})),
                                 RunView(synthetic("old", {"monolith": old}), name="baseline")))
    assert result.verdict == v.BREACH
    expected = ttest_ind(np.log(new), np.log(old), equal_var=False).confidence_interval()
    change, _ = v.welch_change(old, new)
    assert change.low == pytest.approx(math.exp(expected.low))
    assert change.high == pytest.approx(math.exp(expected.high))
    point = math.exp(np.mean(np.log(new)) - np.mean(np.log(old)))
    assert result.measured.startswith(f"{(point - 1) * 100:+.1f}% (") and "p=" in result.measured
    same = verdict_of(evaluate(growth_file(0.15), RunView(synthetic("new", {"monolith": old})),
                               RunView(synthetic("old", {"monolith": old}), name="baseline")))
    assert same.verdict == v.PASS


def test_growth_between_two_placements_of_one_run_is_paired():
    # trial-to-trial drift of +-30% shared by both placements: unpaired it would hide a 20%
    # slowdown; paired, the drift cancels
    drift = [0.7, 1.3, 1.0, 0.8, 1.25]
    base = [7000.0 * d for d in drift]
    slower = [7000.0 * 1.2 * d * (1 + e) for d, e in zip(drift, (0.01, -0.01, 0.0, 0.005, -0.005))]
    result = verdict_of(evaluate(growth_file(0.10, versus="monolith"),
                                 RunView(synthetic("r", {"monolith": base, "candidate": slower}))))
    assert result.verdict == v.BREACH and "+20.0%" in result.measured


def exact_logs(trials: int, ratio: float, sd: float) -> list[float]:
    """Per-pair log ratios with exactly this geometric mean ratio and standard deviation."""
    z = np.linspace(-1, 1, trials)
    return [float(x) for x in z / np.std(z, ddof=1) * sd + math.log(ratio)]


def paired_growth(logs: list[float], limit: float = 0.10) -> v.Decision:
    from bench.results.stats import paired_ratio
    r = paired_ratio([1.0] * len(logs), [math.exp(x) for x in logs])
    return v.growth(Estimate(r.value, r.low, r.high, r.pairs), limit, v.Spread.of_logs(logs))


@pytest.mark.parametrize("ratio", [1.04, 1.07, 1.13])  # two within a 10% limit, one over it
def test_the_trials_needed_are_enough_when_the_spread_holds(ratio):
    sd = 0.06
    decision = paired_growth(exact_logs(3, ratio, sd))
    assert decision.verdict == v.NOISY
    m = decision.trials_needed
    assert m is not None and m > 3
    # m trials with the same ratio and spread decide; m - 1 do not
    assert paired_growth(exact_logs(m, ratio, sd)).verdict != v.NOISY
    assert paired_growth(exact_logs(m - 1, ratio, sd)).verdict == v.NOISY


def simulated_p99s(rng: np.random.Generator, trials: int, drift: float,
                   extra_ms: float = 0.0) -> list[float]:
    """Per-trial p99 (µs) of an endpoint: 3 ms + a lognormal service time (p99 ~7 ms),
    every trial scaled by its own drift factor, from PER_TRIAL_SAMPLES requests each;
    ``extra_ms`` is added to every request (the endpoint made slower)."""
    out = []
    for _ in range(trials):
        factor = math.exp(rng.normal(0, drift))
        ms = (3.0 + rng.lognormal(math.log(1.2), 0.55, PER_TRIAL_SAMPLES)) * factor + extra_ms
        out.append(float(np.percentile(ms, 99)) * 1000)
    return out


def calibration_runs(seed: int, extra_ms: float, trials: int = 5, repetitions: int = 20):
    rng = np.random.default_rng(seed)
    budget = growth_file(0.10)
    for rep in range(repetitions):
        drift = rng.uniform(0.03, 0.08)  # between-trial drift, 3-8%
        old = simulated_p99s(rng, trials, drift)
        new = simulated_p99s(rng, trials, drift, extra_ms)
        yield verdict_of(evaluate(budget, RunView(synthetic(f"new{rep}", {"monolith": new})),
                                  RunView(synthetic(f"old{rep}", {"monolith": old}), name="baseline")))


def test_calibration_a_against_a_passes_a_10_percent_budget():
    results = list(calibration_runs(seed=2024, extra_ms=0.0))
    flagged = sum(r.verdict == v.BREACH for r in results)
    assert len(results) - flagged >= 19, [r.message for r in results]


def test_calibration_an_endpoint_2_ms_slower_is_flagged():
    results = list(calibration_runs(seed=2025, extra_ms=2.0))
    baseline_p99 = np.mean(simulated_p99s(np.random.default_rng(1), 5, 0.05)) / 1000
    assert 5 <= baseline_p99 <= 10  # the scenario: 2 ms on a ~5-10 ms p99
    flagged = sum(r.verdict == v.BREACH for r in results)
    assert flagged >= 19, [r.message for r in results]


def test_refusals_are_raised_before_any_verdict():
    run_ = RunView(synthetic("r", {"monolith": [7000.0, 7100.0]}))
    base = RunView(synthetic("b", {"monolith": [7000.0, 7100.0]},
                             environment={"cpu_model": "y", "cpu_count": 2}), name="baseline")
    with pytest.raises(Unusable, match="cpu_model"):
        evaluate(growth_file(0.1), run_, base)
    allowed = evaluate(growth_file(0.1), run_, base, Allowances(env_mismatch=True))
    assert allowed.warnings and "cpu_model" in allowed.warnings[0]


def ladder_run(p99_ms: dict[float, tuple[float, float, float]], trials: int = 3,
               invalid: tuple[float, ...] = ()) -> RunSummary:
    """A journey ladder of one placement: rate -> p99 (value, low, high) in ms, with the
    journey's own throughput verdicts."""
    from bench.experiments.journey.experiment import throughput_at_objective
    rungs, steps = {}, []
    for rate, (value, low, high) in p99_ms.items():
        label = f"r{rate:g}"
        bad = rate in invalid
        rungs[label] = {"rate": rate, "trials": trials, "valid_trials": trials - bad,
                        "latency": {"p99": Estimate(value * 1000, low * 1000, high * 1000,
                                                    samples=5000).to_json()}}
        steps += [{"experiment": "journey", "placement": "monolith", "rung": label, "rate": rate,
                   "trial": t, "valid": not (bad and t == 0),
                   "invalid_reasons": "doctored" if bad and t == 0 else ""} for t in range(trials)]
    ladder = [(f"r{rate:g}", rate) for rate in p99_ms]
    journey = {"placements": {"monolith": rungs}, "ratios": {}, "headline_rung": ladder[0][0],
               "objective_p99_ms": 50.0,
               "throughput_at_objective": {"monolith": throughput_at_objective(rungs, ladder, 50_000)}}
    return RunSummary("ladder", True, ["monolith"], "quick", trials, 1, {}, "", steps,
                      {"journey": journey}, [], [], [])


LADDER = {50.0: (10, 8, 12), 120.0: (30, 25, 35), 200.0: (80, 60, 100), 300.0: (500, 400, 600)}


@pytest.mark.parametrize("ladder,floor_rps,verdict", [
    (LADDER, 100, v.PASS),      # met at 120
    (LADDER, 200, v.BREACH),    # missed at 200
    (LADDER, 400, v.BREACH),    # missed at 200 already
    (LADDER, 150, v.MISSING),   # met at 120, missed at 200: the ladder cannot tell
    ({50.0: (10, 8, 12), 120.0: (30, 25, 35)}, 400, v.MISSING),  # met all the way up to 120
])
def test_a_throughput_floor_follows_the_ladder(ladder, floor_rps, verdict):
    run_ = ladder_run(ladder)
    budget = parse_budgets('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n'
                           f"[budget.floor]\nthroughput_rps = {floor_rps}\n")
    assert verdict_of(evaluate(budget, RunView(run_))).verdict == verdict


def test_a_throughput_floor_is_noisy_at_an_inconclusive_rung_and_ignores_invalid_rungs_above():
    budget = parse_budgets('[[budget]]\nexperiment = "journey"\nplacement = "monolith"\n'
                           "[budget.floor]\nthroughput_rps = 120\n")
    noisy = verdict_of(evaluate(budget, RunView(ladder_run({50.0: (10, 8, 12),
                                                            120.0: (48, 40, 56)}))))
    assert noisy.verdict == v.NOISY and "inconclusive" in noisy.reason
    assert noisy.trials_needed is not None and noisy.trials_needed > 3
    # a saturated rung over the floor bounds the throughput; it is not refused
    saturated = ladder_run({50.0: (10, 8, 12), 120.0: (30, 25, 35), 300.0: (900, 700, 1100)},
                           invalid=(300.0,))
    assert verdict_of(evaluate(budget, RunView(saturated))).verdict == v.PASS
    under = ladder_run({50.0: (10, 8, 12), 120.0: (30, 25, 35)}, invalid=(50.0,))
    with pytest.raises(Unusable, match="journey monolith r50 trial 1"):
        evaluate(budget, RunView(under))
