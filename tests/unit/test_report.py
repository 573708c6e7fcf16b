"""The report layer on the committed smoke run: summary.json, figures, report.md, report.html,
built from a copy (the fixture itself is never written), complete and incomplete."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.render.document import Table, md_escape, to_html, to_markdown
from bench.render.report import build_report

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-smoke"
SCHEMA_1 = FIXTURE.with_name("run-schema1")  # written by the harness before schema 2
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def copy_of_fixture(root: Path) -> Path:
    run_dir = root / "run-smoke"
    shutil.copytree(FIXTURE, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The fixture copied and reported on through ``seambench report`` (in process)."""
    run_dir = copy_of_fixture(tmp_path_factory.mktemp("complete"))
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(run_dir / "report.html")
    return run_dir


@pytest.fixture(scope="module")
def incomplete(tmp_path_factory) -> Path:
    """An interrupted run: manifest says incomplete, the journey never ran."""
    run_dir = copy_of_fixture(tmp_path_factory.mktemp("incomplete"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.update(complete=False, incomplete_reason="interrupted")
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    steps = pd.read_csv(run_dir / "steps.csv")
    for raw in steps[steps.experiment == "journey"].raw_dir:
        shutil.rmtree(run_dir / raw)
    steps[steps.experiment != "journey"].to_csv(run_dir / "steps.csv", index=False)
    build_report(run_dir)
    return run_dir


def test_report_writes_summary_report_and_figures(built):
    summary = json.loads((built / "summary.json").read_text())
    assert summary["schema"] == "seambench.summary/2" and summary["complete"] is True
    assert list(summary["experiments"]) == ["hops", "journey"]
    md = (built / "report.md").read_text()
    for needle in (summary["run_id"], "complete", "CPU 1", "smoke", "Hop cost", "Journey",
                   "Ratios (paired by trial)", "Capacity and throughput at the p99 objective", "Invalid steps",
                   "Warnings", "How to read this", "intended send time", "no coordinated omission",
                   "Student-t"):
        assert needle in md, needle
    for row in summary["headlines"]:  # every headline, labelled as in summary.json
        assert md_escape(row["label"]) in md
    assert "INCOMPLETE" not in md


def test_figures_are_pngs_and_are_linked_from_the_markdown(built):
    figures = sorted((built / "figures").glob("*.png"))
    assert {"hop-cost.png", "journey-latency-vs-rate.png"} <= {f.name for f in figures}
    md = (built / "report.md").read_text()
    for figure in figures:
        assert figure.read_bytes()[:8] == PNG_MAGIC and figure.stat().st_size > 5_000
        assert f"](figures/{figure.name})" in md


def test_html_is_self_contained_with_embedded_figures(built):
    page = (built / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page and "<style>" in page
    references = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, re.IGNORECASE)
    assert references and all(r.startswith("data:image/png;base64,") for r in references)
    assert len(references) == len(list((built / "figures").glob("*.png")))
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page and "<script" not in page and "@import" not in page


def make_invalid(run_dir: Path, slug: str, reason: str) -> None:
    steps = pd.read_csv(run_dir / "steps.csv", dtype={"invalid_reasons": "string"})
    steps.loc[steps.slug == slug, ["valid", "invalid_reasons"]] = [False, reason]
    steps.to_csv(run_dir / "steps.csv", index=False)


def test_an_invalid_step_is_listed_and_enters_no_figure(tmp_path):
    run_dir = copy_of_fixture(tmp_path)
    make_invalid(run_dir, "journey-monolith-r30-t1", "made invalid by the test")
    summary = build_report(run_dir)
    assert any("journey monolith r30 trial 2: made invalid by the test" == s
               for s in summary.invalid_steps)
    journey = summary.experiments["journey"]
    mono = journey["placements"]["monolith"]["r30"]
    assert mono["valid_trials"] == mono["trials"] - 1
    assert mono["completed"] == int(pd.read_csv(run_dir / "steps.csv").query(
        "slug == 'journey-monolith-r30-t0'").completed.iloc[0])  # trial 2 is not pooled
    ratio = journey["ratios"]["microservices/monolith"]["r30"]["p50"]
    assert ratio["pairs"] <= 1  # the pair of the invalid trial is dropped, not half-used
    # no rate is valid in every trial of every placement: the headline rests on nothing
    assert journey["headline_rung"] is None and summary.exit_code == 3
    assert "made invalid by the test" in (run_dir / "report.md").read_text()


def test_incomplete_run_still_reports_and_says_so(incomplete):
    md = (incomplete / "report.md").read_text()
    assert "INCOMPLETE" in md and "The journey was not measured in this run." in md
    assert "Hop cost" in md  # what did finish is reported
    assert json.loads((incomplete / "summary.json").read_text())["complete"] is False
    names = {f.name for f in (incomplete / "figures").glob("*.png")}
    assert not any("journey" in n for n in names)
    assert "INCOMPLETE" in (incomplete / "report.html").read_text()


def test_a_run_with_only_a_manifest_reports_without_figures(tmp_path):
    run_dir = tmp_path / "empty-run"
    run_dir.mkdir()
    shutil.copy(FIXTURE / "manifest.json", run_dir)
    summary = build_report(run_dir)
    assert summary.headlines == [] or all(h.kind == "text" for h in summary.headlines)
    assert (run_dir / "report.html").is_file() and not list(run_dir.glob("figures/*.png"))
    assert "The hop chain was not measured in this run." in (run_dir / "report.md").read_text()


def test_a_schema_1_run_is_rebuilt_into_the_new_summary(tmp_path):
    run_dir = tmp_path / "old"
    shutil.copytree(SCHEMA_1, run_dir)
    summary = build_report(run_dir)
    doc = json.loads((run_dir / "summary.json").read_text())
    assert doc["schema"] == "seambench.summary/2"
    hops = summary.experiments["hops"]
    assert hops["floors"]["http"]["p50"]["value"] > 0  # read from the old floors.csv
    assert hops["placements"]["microservices"]["http_hops_per_chain"] == [1, 2, 3, 4, 5]
    mono = summary.experiments["journey"]["placements"]["monolith"]["r30"]
    assert mono["notification_lag_us"]["count"] > 0  # read from the old histograms.hlog
    assert "Hop cost" in (run_dir / "report.md").read_text()


def test_text_is_escaped_in_both_renderings(tmp_path):
    blocks = [Table(["name", "value"], [["<script>x</script> | *a*", "1"]])]
    page = to_html(blocks, "t <b>", tmp_path)
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<title>t &lt;b&gt;</title>" in page
    md = to_markdown(blocks)
    assert r"\<script>x\</script> \| \*a\*" in md


def test_a_comparison_asked_for_is_a_paired_ratio_beside_the_baseline_ones(tmp_path):
    """``--ratio A/B``: the manifest's comparisons give B-paired ratios besides X/baseline."""
    run_dir = copy_of_fixture(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["config"]["comparisons"] = [["monolith", "microservices"], ["monolith", "nowhere"]]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    ratios = build_report(run_dir).experiments["journey"]["ratios"]
    assert sorted(ratios) == ["microservices/monolith", "monolith/microservices"]  # unknown: ignored
    there, back = (ratios[p]["r30"]["p99"] for p in ("microservices/monolith", "monolith/microservices"))
    assert back["value"] == pytest.approx(1 / there["value"], rel=1e-3)  # same pairs, inverted
    assert "monolith/microservices" in (run_dir / "report.md").read_text()


def test_a_ratio_of_placements_not_in_the_run_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--profile", "smoke", "--ratio", "monolith/hybrid",
                                      "--results", str(tmp_path)])
    assert result.exit_code == 2 and "--ratio" in result.output and "monolith, microservices" in result.output
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("assignment,needle", [
    ("fanout.ns", "not EXPERIMENT.FIELD=VALUE"),
    ("journey.rates=50", "'journey' is not an experiment of this run"),
    ("fanout.nope=1", "fanout has no setting 'nope'"),
    ("fanout.ns=1,4,99", "must be at most shards (4)"),
    ("fanout.ns=4,8", "including 1"),
    ("fanout.variants=plain,spicy", "choose from plain, tail, hedging"),
])
def test_a_bad_setting_is_a_one_line_error_and_nothing_runs(tmp_path, assignment, needle):
    result = CliRunner().invoke(cli, ["run", "--profile", "smoke", "--experiment", "fanout",
                                      "--set", assignment, "--results", str(tmp_path)])
    assert result.exit_code == 2 and needle in result.output and "--set" in result.output, result.output
    assert not any(tmp_path.iterdir())


def test_settings_from_the_command_line_reach_the_experiment():
    from bench.cli import _assignments
    from bench.experiments.fanout.experiment import EXPERIMENT as fanout
    one = fanout.settings("smoke", {"ns": 1, "variants": "hedging"})  # a single value is a 1-tuple
    assert one.ns == (1,) and one.variants == ("hedging",)
    assert _assignments(("fanout.ns=1,4,16", "fanout.rate=20", "fanout.query=oak lamp",
                         'fanout.tail={"base_ms": 0.5, "slow_p": 0.01, "slow_ms": 20}'),
                        ("fanout",)) == {"fanout": {"ns": [1, 4, 16], "rate": 20, "query": "oak lamp",
                                                    "tail": {"base_ms": 0.5, "slow_p": 0.01, "slow_ms": 20}}}
