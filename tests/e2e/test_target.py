"""`seambench run --target`: placements the harness did not start, measured over HTTP only.

The targets here are shops this test starts itself (so it knows the truth about them): the
run sees only their URLs and /metrics. What it reports must be what the harness measures
of the same processes from /proc, and a target that does not answer fails the run cleanly.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench.load.generator import TARGET, run_load  # TARGET: the generic scenario
from bench.load.plan import LoadPlan
from bench.system.deployed import DEFAULT_CREDENTIAL_ENV
from bench.system.launcher import LaunchSettings, RunningShop, launch
from bench.system.sampler import window_usage
from bench.system.scrape import MetricsSampler
from shop.placement import load_topology
from tests.e2e.test_launcher import SEAMBENCH

SMALL = LaunchSettings(scrypt_n=2**4, edge="none")


def target_file(shop: RunningShop, path: Path, name: str, topology: str) -> Path:
    """A target file for ``shop``, as a deployment's owner would write it."""
    metrics = "\n".join(f'"{server}" = "{proc.url}/metrics"'
                        for server, proc in shop.processes.items())
    path.write_text(f'name = "{name}"\ntopology = "{topology}"\nbase_url = "{shop.base_url}"\n'
                    f'[metrics]\n{metrics}\n')
    return path


def test_prometheus_process_metrics_agree_with_the_pid_sampler(tmp_path):
    """The CPU a target's /metrics reports for a step is what /proc says the same processes
    used in the same window (the local sampler's ns clocks), within the 10 ms ticks."""
    with launch(load_topology("microservices"), SMALL) as shop:
        # a login that fails: the gateway and auth work, and nothing is stored
        plan = LoadPlan(rate_per_s=150, duration_s=4, warmup_s=1, output_dir=str(tmp_path),
                        options={"path": "/auth/login", "method": "POST",
                                 "json": {"username": "nobody", "password": "wrong-password"}})
        scraper = MetricsSampler({n: p.url + "/metrics" for n, p in shop.processes.items()},
                                 period_s=0.25)
        with scraper:
            result = run_load(TARGET, shop.base_url, plan,
                              watch={"pids": [p.pid for p in shop.processes.values()]})
    assert not scraper.errors
    local = window_usage(result.samples, "pids", result.measure_start_s, result.measure_end_s)
    scraped = window_usage(scraper.window_samples(result.measure_start_s, result.measure_end_s),
                           "system", result.measure_start_s, result.measure_end_s)
    assert local.cpu_s > 0.2, local  # enough work that 10 ms ticks are a small part of it
    assert scraped.cpu_s == pytest.approx(local.cpu_s, rel=0.1, abs=0.05 * len(shop.processes))
    assert scraped.pss_bytes_max is None and scraped.rss_bytes_max > 10 * 2**20


def test_run_against_targets_reports_the_journey_from_http_alone(tmp_path):
    with launch(load_topology("monolith"), SMALL) as mono, \
            launch(load_topology("microservices"), SMALL) as split:
        files = [target_file(mono, tmp_path / "mono.toml", "mono-deployed", "monolith"),
                 target_file(split, tmp_path / "split.toml", "split-deployed", "microservices")]
        env = {**os.environ, DEFAULT_CREDENTIAL_ENV: mono.deployment.service_credential}
        # one credential per target is read from one variable: give both shops the same
        assert split.deployment.service_credential != mono.deployment.service_credential
        env_split = tmp_path / "split2.toml"
        env_split.write_text(files[1].read_text().replace(
            'name = "split-deployed"', 'name = "split-deployed"\nservice_credential_env = "SPLIT_CRED"'))
        env["SPLIT_CRED"] = split.deployment.service_credential
        done = subprocess.run([*SEAMBENCH, "run", "--profile", "smoke", "--results", str(tmp_path / "r"),
                               "--target", str(files[0]), "--target", str(env_split)],
                              capture_output=True, text=True, timeout=400, env=env)
        alive = not mono.dead() and not split.dead()
    assert alive  # the run started and stopped nothing of theirs
    [run_dir] = (tmp_path / "r").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert done.returncode == summary["exit_code"] in (0, 3), done.stderr[-3000:]
    # hops and fan-out start processes of their own: left out, and said why
    assert "not run against a target: hops" in done.stderr
    assert "not run against a target: fanout" in done.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert list(manifest["config"]["experiments"]) == ["journey"]
    prints = manifest["targets"]
    assert set(prints) == {"mono-deployed", "split-deployed"}
    assert prints["mono-deployed"]["openapi_sha256"] == prints["split-deployed"]["openapi_sha256"]
    assert "service_credential" not in json.dumps(manifest["config"]["targets"]).replace(
        "credential_env", "")
    steps = [json.loads(json.dumps(s)) for s in _rows(run_dir / "steps.csv")]
    assert {s["placement"] for s in steps} == {"mono-deployed", "split-deployed"}
    for s in steps:
        assert float(s["system_cpu_s"]) > 0 and float(s["system_rss_mib"]) > 10, s
        assert s["system_pss_mib"] == "", s  # no PSS from /metrics: said as not measured
        if s["experiment"] == "journey" and s["valid"] == "True":
            assert int(s["notifications"]) == int(s["payments"])
    journey = summary["experiments"]["journey"]
    assert set(journey["placements"]) == {"mono-deployed", "split-deployed"}
    assert "split-deployed/mono-deployed" in journey["ratios"]  # the first is the baseline
    for rung in journey["placements"]["split-deployed"].values():
        if rung["counted_trials"]:  # memory is RSS from /metrics, and says so
            assert rung["memory_kind"] == "RSS"


def test_a_target_that_does_not_answer_fails_the_run_cleanly(tmp_path):
    with launch(load_topology("monolith"), SMALL) as mono:
        path = target_file(mono, tmp_path / "gone.toml", "gone", "monolith")
        path.write_text(path.read_text().replace("[metrics]", "ready_timeout_s = 2\n[metrics]"))
        credential = mono.deployment.service_credential
    # the shop is stopped now: its addresses answer nothing
    done = subprocess.run([*SEAMBENCH, "run", "--profile", "smoke", "--results", str(tmp_path / "r"),
                           "--target", str(path)], capture_output=True, text=True, timeout=200,
                          env={**os.environ, DEFAULT_CREDENTIAL_ENV: credential})
    assert done.returncode == 4, done.stderr[-2000:]
    assert "gone" in done.stderr and "not ready" in done.stderr
    [run_dir] = (tmp_path / "r").iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["complete"] is False


@pytest.mark.parametrize("text, says", [
    ('topology = "monolith"\nbase_url = "http://127.0.0.1:1"\n', "[metrics]"),
    ('topology = "nope"\nbase_url = "http://127.0.0.1:1"\n[metrics]\napp = "http://127.0.0.1:1/metrics"\n',
     "no topology 'nope'"),
    ('topology = "microservices"\nbase_url = "http://127.0.0.1:1"\n[metrics]\nauth = "http://127.0.0.1:1/metrics"\n',
     "lacks billing"),
    ('topology = "monolith"\nbase_url = "https://x:1"\n[metrics]\napp = "http://127.0.0.1:1/metrics"\n',
     "base_url must be"),
])
def test_a_bad_target_file_is_one_line_and_exit_2(tmp_path, text, says):
    path = tmp_path / "t.toml"
    path.write_text(text)
    done = subprocess.run([*SEAMBENCH, "run", "--target", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_experiment_that_starts_processes_is_refused_against_a_target(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('topology = "monolith"\nbase_url = "http://127.0.0.1:1"\n'
                    '[metrics]\napp = "http://127.0.0.1:1/metrics"\n')
    done = subprocess.run([*SEAMBENCH, "run", "--target", str(path), "--experiment", "chaos"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not available against a target" in done.stderr, done.stderr


def _rows(path: Path) -> list[dict]:
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))

