"""Distributed generators (Locust's master and workers, on loopback) against the ground-truth
server of tests/bench/truth_server.py: the one schedule sent exactly, the known distribution
merged, a worker killed mid-step named, and `seambench load --generators` / `seambench
generator` as a user runs them. Each run is a few seconds and stops by itself."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import psutil
import pytest

from bench.load.distributed import Distributed
from bench.load.generator import TARGET, LoadError, LoadResult, run_load
from bench.load.plan import LoadPlan, arrival_offsets_ns, deal, split
from bench.results.model import GENERATOR_FAILED
from tests.bench.truth_server import running

SEAMBENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
SLOW_EVERY, SLOW_MS = 10, 20.0  # the truth: every 10th request the server answers is 20 ms slower


def measured_arrivals(plan: LoadPlan) -> int:
    """How many arrivals of ``plan``'s schedule fall in its measured window."""
    warmup_ns = plan.warmup_s * 1e9
    return sum(1 for offset in arrival_offsets_ns(plan) if offset >= warmup_ns)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_known_mixture(result: LoadResult) -> int:
    """The truth server's mixture, within the intervals test_ground_truth allows one
    generator: p50 the fast floor, the slow tenth exactly at 20 ms more. Returns how many
    latencies were slow."""
    h = result.latency()
    precision_us = SLOW_MS * 1000 * 0.001 + 1  # 3 significant figures
    assert h.get_value_at_percentile(50) < 5_000
    assert max(h.get_value_at_percentile(q) for q in (85, 89.5)) < SLOW_MS * 1000
    assert h.get_value_at_percentile(90.5) >= SLOW_MS * 1000 - precision_us
    assert h.get_value_at_percentile(99) <= SLOW_MS * 1000 + precision_us + 3 * 5_000
    return sum(item.count_at_value_iterated_to for item in h.get_recorded_iterator()
               if item.value_iterated_to >= SLOW_MS * 1000 - precision_us)


def test_two_workers_send_exactly_one_generators_schedule_and_its_distribution(tmp_path):
    plan = LoadPlan(rate_per_s=200, duration_s=4, warmup_s=0.5, arrival="poisson", seed=9,
                    output_dir=str(tmp_path / "one"))
    expected = measured_arrivals(split(plan, 1)[0])
    with running(SLOW_EVERY, SLOW_MS) as (_, url):
        one = run_load(TARGET, url, plan)
        two = run_load(TARGET, url, replace(plan, output_dir=str(tmp_path / "two")), generators=2)
    assert one.valid and two.valid, (one.invalid_reasons, two.invalid_reasons)
    assert one.scheduled == two.scheduled == two.sent == two.completed == expected
    assert two.errors == 0 and sorted(w.index for w in two.workers) == [0, 1]
    assert len({w.pid for w in two.workers}) == 2
    shares = [json.loads(p.result_path().read_text())["scheduled"] for p in deal(two.plan, 2)]
    assert shares == [measured_arrivals(p) for p in deal(two.plan, 2)]
    slow_one, slow_two = assert_known_mixture(one), assert_known_mixture(two)
    # every 10th request the server answers is slow, whichever worker sent it
    for slow, result in ((slow_one, one), (slow_two, two)):
        assert abs(slow - result.completed / SLOW_EVERY) <= 2


def test_a_worker_killed_mid_step_makes_it_invalid_naming_that_worker(tmp_path, monkeypatch):
    # the workers' scratch directories land here, so the test sees their schedules start
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    plan = LoadPlan(rate_per_s=200, duration_s=8, warmup_s=0.5, arrival="poisson", seed=3,
                    output_dir=str(tmp_path / "out"))
    killed: list[int] = []

    def kill_one_worker_mid_step() -> None:
        deadline = time.monotonic() + 60
        # a worker makes its scratch directory as its user starts, just before the shared start
        while time.monotonic() < deadline and len(list(scratch.glob("seambench-worker-*"))) < 2:
            time.sleep(0.05)
        time.sleep(plan.warmup_s + 2.5)  # the start is a fraction of a second later
        workers = [p for p in psutil.Process().children() if "--worker" in p.cmdline()]
        killed.append(workers[0].pid)
        os.killpg(workers[0].pid, signal.SIGKILL)  # its own group (spawn_group)

    with running(0, 0) as (_, url):
        threading.Thread(target=kill_one_worker_mid_step, daemon=True).start()
        started = time.monotonic()
        result = run_load(TARGET, url, plan, generators=2)
        took = time.monotonic() - started
    assert killed, "no worker was killed"
    assert not result.valid
    failed = [r for r in result.invalid_reasons if r.code == GENERATOR_FAILED]
    assert len(failed) == 1 and f"pid {killed[0]})" in failed[0], result.invalid_reasons
    assert "heartbeat" in failed[0], failed[0]
    # the survivor sent its whole slice, and the step ended without waiting out a time limit
    (survivor,) = result.workers
    assert survivor.pid != killed[0]
    assert result.scheduled == measured_arrivals(deal(plan, 2)[survivor.index])
    assert took < plan.total_s + 30


def test_load_command_runs_on_local_and_remote_generators(tmp_path):
    """`seambench load --generators 2` with both workers local, then with one of them joined
    by `seambench generator`, as on another machine (here on loopback)."""
    port = free_port()
    with running(0, 0) as (_, url):
        local = subprocess.run([*SEAMBENCH, "load", url + "/", "--rate", "150", "--duration", "2",
                                "--warmup", "0.5", "--generators", "2", "--json"],
                               capture_output=True, text=True, timeout=120)
        generator = subprocess.Popen([*SEAMBENCH, "generator", "--master-host", "127.0.0.1",
                                      "--master-port", str(port)], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            remote = subprocess.run([*SEAMBENCH, "load", url + "/", "--rate", "150",
                                     "--duration", "2", "--warmup", "0.5", "--generators", "2",
                                     "--remote-generators", "1", "--master-bind-host", "127.0.0.1",
                                     "--master-port", str(port), "--json"],
                                    capture_output=True, text=True, timeout=120)
            assert generator.wait(30) == 0, generator.stderr.read()
        finally:
            os.killpg(generator.pid, signal.SIGKILL) if generator.poll() is None else None
            generator.wait(5)
    expected = measured_arrivals(split(LoadPlan(rate_per_s=150, duration_s=2, warmup_s=0.5,
                                                arrival="poisson", seed=1, output_dir="."), 1)[0])
    for done in (local, remote):
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["valid"] and doc["requests"] == expected and doc["errors"] == 0
        assert sorted(w["index"] for w in doc["workers"]) == [0, 1]
    assert "seambench generator --master-host" in remote.stderr


def test_a_master_whose_workers_never_come_fails_as_the_tool(tmp_path):
    """A remote generator that never connects: the master gives up after its wait and the
    run is the tool's failure (LoadError: exit 4 for `load`), not a measurement."""
    plan = LoadPlan(rate_per_s=50, duration_s=1, output_dir=str(tmp_path))
    layout = Distributed(2, remote=1, port=free_port(), connect_wait_s=2)
    started = time.monotonic()
    with running(0, 0) as (_, url), pytest.raises(LoadError, match="master wrote no result"):
        run_load(TARGET, url, plan, generators=layout)
    assert time.monotonic() - started < 30


def test_run_takes_every_steps_load_from_distributed_generators(tmp_path):
    """`seambench run --generators 2`: each step's schedule sent by two workers, every
    scheduled request accounted for, the setting recorded; chaos, whose oracle reads the
    generator's own log, is refused."""
    done = subprocess.run([*SEAMBENCH, "run", "--profile", "smoke", "--generators", "2",
                           "--experiment", "journey", "--kdf-log2", "4", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    [run_dir] = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert done.returncode == summary["exit_code"] in (0, 3), done.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["generators"] == 2
    import csv
    with open(run_dir / "steps.csv") as f:
        steps = list(csv.DictReader(f))
    for step in steps:
        scheduled = int(step["scheduled"])
        assert scheduled > 0 and int(step["completed"]) + int(step["censored"]) == scheduled, step
    refused = subprocess.run([*SEAMBENCH, "run", "--generators", "2", "--experiment", "chaos"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "distributed generators" in refused.stderr
