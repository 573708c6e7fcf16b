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

from bench.analysis import summarize
from bench.cli import cli
from bench.compare import NO_CLEAR_CHANGE, compare, render_markdown, render_text

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-smoke"
SEAMBENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
JOURNEY_P99 = "journey p99, microservices @ 30 req/s"


@pytest.fixture(scope="module")
def summary() -> dict:
    return summarize(FIXTURE)  # reads only


def test_a_run_against_itself_shows_no_clear_change(summary):
    result = compare(summary, copy.deepcopy(summary))
    assert result.warnings == []
    labels = [row.label for row in result.rows]
    assert JOURNEY_P99 in labels and "journey p99 microservices/monolith @ 30 req/s" in labels
    assert len(result.rows) >= 10
    assert all(row.verdict == NO_CLEAR_CHANGE for row in result.rows)
    assert all(row.change == pytest.approx(1.0) for row in result.rows if row.change is not None)


def test_a_doubled_p99_with_a_disjoint_interval_is_a_change(summary):
    doctored = copy.deepcopy(summary)
    rung = doctored["journey"]["microservices"]["30"]
    value, (low, high) = rung["p99_us"]["value"], rung["p99_us"]["ci95"]
    rung["p99_us"] = {"value": 2 * value, "ci95": [2 * low, 2 * high]}
    result = compare(summary, doctored)
    [row] = [r for r in result.rows if r.label == JOURNEY_P99]
    assert row.change == pytest.approx(2.0) and row.verdict == "B higher (CIs apart)"
    assert [r.label for r in result.rows if r.verdict != NO_CLEAR_CHANGE] == [JOURNEY_P99]
    text = render_text(result)
    assert "2.00x" in text and "B higher (CIs apart)" in text
    assert "| B higher (CIs apart) |" in render_markdown(result)


def test_mismatched_runs_are_compared_with_warnings_not_errors(summary):
    other = copy.deepcopy(summary)
    other.update(placements=["monolith", "hybrid"], profile="quick", trials=5, complete=False)
    other["journey"]["hybrid"] = other["journey"].pop("microservices")
    result = compare(summary, other)
    warnings = " / ".join(result.warnings)
    for needle in ("placements differ", "profile differ", "trials per step differ", "INCOMPLETE"):
        assert needle in warnings
    verdicts = {row.label: row.verdict for row in result.rows}
    assert verdicts[JOURNEY_P99] == "only in A"
    assert verdicts["journey p99, hybrid @ 30 req/s"] == "only in B"
    assert render_text(result).startswith("warning: ")


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
