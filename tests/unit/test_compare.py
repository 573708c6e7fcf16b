"""``seambench compare`` and ``seambench report`` on the command line, and compare() itself,
over the committed smoke run (copied, never written) and doctored copies of its summary."""
from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.render.compare import NO_CLEAR_CHANGE, compare, render_markdown, render_text
from bench.results.model import Estimate, Headline, Ratio, RunSummary
from bench.results.summary import summarize

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-smoke"
SEAMBENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


def run_with(headlines: list[Headline], **changes) -> RunSummary:
    base = dict(run_id="r", complete=True, placements=["monolith", "microservices"],
                profile="quick", trials=3, seed=1, environment={"cpu_model": "x", "cpu_count": 2},
                cpu_note="", steps=[], experiments={}, headlines=headlines, warnings=[],
                invalid_steps=[])
    return RunSummary(**{**base, **changes})


def p99_ratio(*log_ratios: float) -> Headline:
    import math
    mean = sum(log_ratios) / len(log_ratios)
    return Headline("journey p99 microservices/monolith @ 120 req/s", "ratio",
                    ratio=Ratio(math.exp(mean), math.exp(mean - 0.1), math.exp(mean + 0.1),
                                tuple(log_ratios)))


def per_call(*values: float) -> Headline:
    return Headline("one call, microservices", "latency",
                    Estimate(sum(values) / len(values), min(values), max(values)),
                    per_trial=tuple(values))


def test_a_run_against_itself_shows_no_clear_change():
    a = run_with([p99_ratio(1.10, 1.15, 1.05), per_call(1400, 1450, 1500)])
    result = compare(a, copy.deepcopy(a))
    assert result.warnings == []
    assert [row.verdict for row in result.rows] == [NO_CLEAR_CHANGE, NO_CLEAR_CHANGE]
    assert all(row.change == pytest.approx(1.0) for row in result.rows)


def test_a_real_shift_is_a_change_and_noise_is_not():
    a = run_with([p99_ratio(1.10, 1.15, 1.05), per_call(1400, 1450, 1500)])
    b = run_with([p99_ratio(1.80, 1.85, 1.75), per_call(1380, 1520, 1460)])
    rows = {row.label: row for row in compare(a, b).rows}
    shifted = rows["journey p99 microservices/monolith @ 120 req/s"]
    assert shifted.verdict == "B higher" and shifted.p_value < 0.01
    assert shifted.change == pytest.approx(2.01, abs=0.01)
    noisy = rows["one call, microservices"]
    assert noisy.verdict == NO_CLEAR_CHANGE and noisy.p_value > 0.05
    text = render_text(compare(a, b))
    assert "B higher (p=" in text and "| B higher (p=" in render_markdown(compare(a, b))


def test_disjoint_intervals_are_not_what_decides():
    # narrow intervals that do not overlap, but only two trials each with a spread that a
    # test cannot tell apart: the verdict follows the test, not the intervals
    a = run_with([per_call(1000, 1400)])
    b = run_with([per_call(1100, 1600)])
    [row] = compare(a, b).rows
    assert row.verdict == NO_CLEAR_CHANGE


def test_too_few_trials_get_no_verdict():
    [row] = compare(run_with([per_call(1000)]), run_with([per_call(2000)])).rows
    assert row.verdict.startswith("no test")


def test_two_runs_of_one_build_apart_by_less_than_runs_drift_are_not_called_different():
    # tight within-run spreads (the trials agree to 1%) but 6% apart: on this machine runs of
    # one build move that much (RUN_TO_RUN_SD), so one run a side cannot call it a change
    a = run_with([per_call(1000, 1010, 990, 1005, 995)])
    b = run_with([per_call(1060, 1070, 1050, 1065, 1055)])
    [row] = compare(a, b).rows
    assert row.verdict == NO_CLEAR_CHANGE and row.raw_p_value > 0.05
    far = run_with([per_call(1300, 1310, 1290, 1305, 1295)])  # 30%: beyond any run's drift
    assert compare(a, far).rows[0].verdict == "B higher"


def test_several_runs_a_side_test_the_runs_themselves():
    side_a = [run_with([per_call(v, v * 1.01, v * 0.99)]) for v in (1000, 1040, 980)]
    same = [run_with([per_call(v, v * 1.01, v * 0.99)]) for v in (1010, 970, 1030)]
    moved = [run_with([per_call(v, v * 1.01, v * 0.99)]) for v in (1400, 1430, 1380)]
    assert compare(side_a, same).rows[0].verdict == NO_CLEAR_CHANGE
    row = compare(side_a, moved).rows[0]
    assert row.verdict == "B higher" and row.change == pytest.approx(1.39, abs=0.02)
    assert "Welch's t test over 3 and 3 runs" in compare(side_a, moved).method


def test_figures_tested_together_are_holm_adjusted():
    from bench.render.compare import holm
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    # one figure alone at p ~ 0.03 is a change; among four tested together it is not
    a = run_with([per_call(1000, 1020, 980)])
    b = run_with([per_call(1170, 1190, 1150)])
    [alone] = compare(a, b).rows
    assert alone.verdict == "B higher" and alone.p_value == alone.raw_p_value < 0.05
    same = [Headline(f"figure {i}", "latency", Estimate(1000, 900, 1100), per_trial=(1000, 1020, 980))
            for i in range(3)]
    rows = compare(run_with([*a.headlines, *same]), run_with([*b.headlines, *same])).rows
    assert rows[0].raw_p_value == alone.raw_p_value and rows[0].p_value > 0.05
    assert rows[0].verdict == NO_CLEAR_CHANGE


def test_mismatched_runs_are_compared_with_warnings_not_errors():
    a = run_with([p99_ratio(1.1, 1.2)])
    b = run_with([per_call(1, 2)], placements=["monolith", "hybrid"], profile="smoke",
                 trials=5, complete=False, environment={"cpu_model": "y", "cpu_count": 2})
    result = compare(a, b)
    warnings = " / ".join(result.warnings)
    for needle in ("placements differ", "profile differ", "trials per step differ", "INCOMPLETE",
                   "cpu_model"):
        assert needle in warnings
    verdicts = {row.label: row.verdict for row in result.rows}
    assert verdicts["journey p99 microservices/monolith @ 120 req/s"] == "only in A"
    assert verdicts["one call, microservices"] == "only in B"
    assert render_text(result).startswith("warning: ")


def test_the_fixture_run_compares_with_itself():
    summary = summarize(FIXTURE)  # reads only
    result = compare(summary, copy.deepcopy(summary))
    assert result.rows and all(row.verdict in (NO_CLEAR_CHANGE, "same") or
                               row.verdict.startswith(("no test", "not measured"))
                               for row in result.rows)


def test_compare_command_prints_and_writes_only_with_output(tmp_path):
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    for run_dir in (run_a, run_b):
        shutil.copytree(FIXTURE, run_dir)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    done = CliRunner().invoke(cli, ["compare", str(run_a), str(run_b)])  # no summary.json: computed
    assert done.exit_code == 0, done.output
    assert "B/A" in done.stdout and NO_CLEAR_CHANGE in done.stdout
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # wrote nothing
    out = tmp_path / "cmp.md"
    done = CliRunner().invoke(cli, ["compare", str(run_a), str(run_b), "--output", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_text().startswith("# seambench compare") and "| figure |" in out.read_text()


def test_compare_with_one_run_and_no_side_b_is_a_one_line_error(tmp_path):
    run_a = tmp_path / "a"
    shutil.copytree(FIXTURE, run_a)
    done = subprocess.run([*SEAMBENCH, "compare", str(run_a)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert "give two runs, or side A's runs and --against" in done.stderr


def test_compare_takes_several_runs_a_side(tmp_path):
    runs = []
    for name in ("a1", "a2", "b1", "b2"):
        shutil.copytree(FIXTURE, tmp_path / name)
        runs.append(str(tmp_path / name))
    done = CliRunner().invoke(cli, ["compare", runs[0], runs[1], "--against", runs[2],
                                    "--against", runs[3]])
    assert done.exit_code == 0, done.output
    assert "Welch's t test over 2 and 2 runs" in done.stdout


@pytest.mark.parametrize("args", [["report", "{dir}"], ["compare", "{dir}", "{dir}"]])
def test_a_directory_that_is_not_a_run_is_one_line_and_exit_2(tmp_path, args):
    (tmp_path / "notes.txt").write_text("not a run")
    done = subprocess.run([*SEAMBENCH, *(a.format(dir=tmp_path) for a in args)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a seambench run" in lines[0], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
