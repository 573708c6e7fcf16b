"""The load generator against servers whose latency is known: does it report the truth?

These run real Locust processes (a few seconds each) on loopback.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from bench.load.generator import TARGET, run_load
from bench.load.plan import LoadPlan
from bench.results.model import NOT_STEADY
from tests.bench.truth_server import running

CLI = [sys.executable, "-c", "from bench.cli import main; main()"]


@pytest.fixture
def truth_server(request):
    with running(*request.param) as started:
        yield started


@pytest.mark.parametrize("truth_server", [(10, 20.0)], indirect=True)
def test_known_mixture_p50_fast_p99_slow(truth_server, tmp_path):
    """10% of requests take exactly 20 ms more: p50 is the fast floor, p99 is 20 ms plus it."""
    _, url = truth_server
    result = run_load(TARGET, url, LoadPlan(rate_per_s=100, duration_s=4, warmup_s=0.5,
                                              arrival="constant", output_dir=str(tmp_path)))
    assert result.valid, result.invalid_reasons
    h = result.names["GET"].latency
    assert result.names["GET"].errors == 0
    floor_us = h.get_value_at_percentile(50)  # the measured fast path (send + server + receive)
    assert floor_us < 5_000
    p99 = h.get_value_at_percentile(99)
    precision = 20_000 * 0.001 + 1  # 3 significant figures
    assert 20_000 - precision <= p99 <= 20_000 + precision + h.get_value_at_percentile(90) * 3
    slow_share = sum(1 for v in [h.get_value_at_percentile(q) for q in (85, 89.5)] if v >= 20_000)
    assert slow_share == 0  # p85 and p89.5 are fast: the slow mass is exactly the top 10%
    assert h.get_value_at_percentile(90.5) >= 20_000 - precision


# ~9 s: in the full tier (CI), so the README's test command answers in about 2 minutes
@pytest.mark.full
@pytest.mark.parametrize("truth_server", [(1, 10.0, 0, True)], indirect=True)
def test_a_server_past_its_capacity_is_not_steady_and_one_under_it_is(truth_server, tmp_path):
    """A server that serves one 10 ms request at a time carries 100 req/s. At 115 req/s a
    queue builds through the window (about 13 ms more every second): the step is not steady,
    whatever its p99; at 50 req/s it is."""
    _, url = truth_server
    over = run_load(TARGET, url, LoadPlan(rate_per_s=115, duration_s=3, warmup_s=0.3,
                                          arrival="constant", output_dir=str(tmp_path / "over")))
    assert NOT_STEADY in [r.code for r in over.invalid_reasons], over.invalid_reasons
    under = run_load(TARGET, url, LoadPlan(rate_per_s=50, duration_s=3, warmup_s=0.3,
                                           arrival="constant", output_dir=str(tmp_path / "under")))
    assert NOT_STEADY not in [r.code for r in under.invalid_reasons], under.invalid_reasons


# ~7 s: in the full tier (CI), so the README's test command answers in about 2 minutes
@pytest.mark.full
@pytest.mark.parametrize("truth_server", [(0, 0)], indirect=True)
def test_a_paused_server_shows_in_the_tail_as_the_schedule_predicts(truth_server, tmp_path):
    """SIGSTOP the server for S seconds during a T-second open-loop run: the requests due
    in the pause wait for its end, so a fraction f = S/T of latencies spread evenly over
    [0, S] and the q-th percentile (q > 1-f) is S * (1 - (1-q)/f). A closed-loop client
    would have sent one request per connection into the pause and hidden the rest."""
    proc, url = truth_server
    pause_s, duration_s, warmup_s = 0.6, 5.0, 1.0

    def pause() -> None:
        time.sleep(warmup_s + 2.0)  # inside the measured window, after Locust has started
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(pause_s)
        os.kill(proc.pid, signal.SIGCONT)

    threading.Thread(target=pause, daemon=True).start()
    result = run_load(TARGET, url, LoadPlan(rate_per_s=200, duration_s=duration_s,
                                              warmup_s=warmup_s, arrival="constant",
                                              output_dir=str(tmp_path)))
    h = result.names["GET"].latency
    f = pause_s / duration_s
    for q in (0.95, 0.99):
        predicted_us = pause_s * (1 - (1 - q) / f) * 1e6
        assert h.get_value_at_percentile(q * 100) == pytest.approx(predicted_us, rel=0.15), q
    assert h.get_max_value() == pytest.approx(pause_s * 1e6, rel=0.15)
    assert result.names["GET"].errors == 0


@pytest.mark.parametrize("truth_server", [(0, 0)], indirect=True)
def test_two_generator_processes_add_up(truth_server, tmp_path):
    _, url = truth_server
    result = run_load(TARGET, url, LoadPlan(rate_per_s=200, duration_s=3, warmup_s=0.5,
                                              arrival="poisson", seed=9, output_dir=str(tmp_path)),
                      processes=2)
    docs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("load-*.json"))]
    assert len(docs) == 2 and all(d["complete"] for d in docs)
    per_process = [d["names"]["GET"]["ok"] for d in docs]
    assert all(n > 0 for n in per_process)
    assert result.names["GET"].latency.get_total_count() == sum(per_process) == result.completed
    assert result.scheduled == sum(d["scheduled"] for d in docs)
    assert result.valid, result.invalid_reasons


@pytest.mark.parametrize("truth_server", [(0, 0)], indirect=True)
def test_load_command_prints_percentiles_and_rate_as_json(truth_server, tmp_path):
    _, url = truth_server
    done = subprocess.run([*CLI, "load", url + "/", "--rate", "150", "--duration", "2",
                           "--warmup", "0.5", "--arrival", "constant", "--json", "--keep", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"):
        assert doc[key] > 0
    assert doc["p50_us"] <= doc["p90_us"] <= doc["p99_us"] <= doc["p999_us"] <= doc["max_us"]
    assert doc["achieved_rate"] == pytest.approx(150, rel=0.05)
    assert doc["valid"] is True and doc["errors"] == 0


def test_load_command_refuses_a_bad_url_in_one_line():
    done = subprocess.run([*CLI, "load", "ftp://example", "--rate", "10", "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "error" in done.stderr
