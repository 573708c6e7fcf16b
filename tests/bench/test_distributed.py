"""Distributed generators without a network: what the master writes for each worker, merged
and judged worker by worker, and the command line's refusals. The runs themselves (Locust's
master and workers on loopback, a worker killed) are in tests/e2e/test_distributed_load.py."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from bench import exitcodes
from bench.load.distributed import Distributed, worker_name
from bench.load.generator import MAX_GENERATOR_CPU, MAX_LATENESS_P99_US, TARGET, collect
from bench.load.plan import LoadPlan, deal
from bench.load.recorder import Recorder
from bench.results import hdr
from bench.results.model import GENERATOR_BUSY, GENERATOR_FAILED, LATE_SENDS

MS = 1_000_000  # ns


def worker_doc(index: int, latencies_us: list[int], late_us: dict[int, int] | None = None,
               cpu: float = 0.1, pid: int = 4000) -> dict:
    """A worker's result as it sends it to the master: one request a millisecond, the i-th
    sent ``late_us[i]`` µs after its intended time."""
    recorder = Recorder(start_ns=0, start_epoch_s=1000.0, warmup_ns=0, log=io.StringIO())
    for i, latency_us in enumerate(latencies_us):
        intended = (i + 1) * MS
        recorder.scheduled_one(intended)
        recorder.sending(intended, intended + 1000 * (late_us or {}).get(i, 0))
        recorder.record("GET", intended, intended + 1000 * latency_us, True, 200)
    recorder.finish((len(latencies_us) + 1) * MS)
    return {**recorder.result(), "complete": True, "error": "", "generator_cpu": cpu,
            "worker": {"index": index, "host": "loadbox", "pid": pid}}


def collected(tmp_path: Path, docs: list[dict]):
    """What ``run_load`` returns once the master has written ``docs``, one per slice."""
    plan = LoadPlan(rate_per_s=1000, duration_s=1, output_dir=str(tmp_path))
    plans = deal(plan, len(docs))
    for p, doc in zip(plans, docs):
        p.result_path().write_text(json.dumps(doc))
    return collect(TARGET, "http://127.0.0.1:1", plan, plans, samples=[])


def test_workers_histograms_are_added_not_their_percentiles_averaged(tmp_path):
    fast, slow = [300 + i % 50 for i in range(900)], [20_000 + i for i in range(100)]
    result = collected(tmp_path, [worker_doc(0, fast), worker_doc(1, slow, pid=4001)])
    everything = hdr.new_histogram()
    for value in fast + slow:
        everything.record_value(value)
    merged = result.names["GET"].latency
    assert merged.get_total_count() == result.scheduled == result.completed == 1000
    for q in (50, 90, 95, 99):
        assert merged.get_value_at_percentile(q) == everything.get_value_at_percentile(q)
    assert result.valid, result.invalid_reasons
    assert [w.name for w in result.workers] == ["generator worker 0 (loadbox, pid 4000)",
                                                "generator worker 1 (loadbox, pid 4001)"]


def test_a_late_worker_spoils_the_step_though_the_merged_sends_were_on_time(tmp_path):
    """5 of worker 1's 100 sends 3x the limit late: under 1% of the 1,100 merged sends, so
    a merged p99 would pass; its own p99 does not."""
    late = {i: 3 * MAX_LATENESS_P99_US // 1000 * 1000 for i in range(0, 100, 20)}
    result = collected(tmp_path, [worker_doc(0, [400] * 1000),
                                  worker_doc(1, [400] * 100, late_us=late, pid=4001)])
    assert result.lateness.get_value_at_percentile(99) <= MAX_LATENESS_P99_US
    assert [(r.code, r.startswith("generator worker 1 (loadbox, pid 4001)"))
            for r in result.invalid_reasons] == [(LATE_SENDS, True)]


def test_a_worker_over_its_cpu_limit_is_named(tmp_path):
    result = collected(tmp_path, [worker_doc(0, [400] * 100, cpu=MAX_GENERATOR_CPU + 0.05),
                                  worker_doc(1, [400] * 100, cpu=0.2, pid=4001)])
    assert [r.code for r in result.invalid_reasons] == [GENERATOR_BUSY]
    assert "generator worker 0 (loadbox, pid 4000)" in result.invalid_reasons[0]
    assert result.generator_cpu == [MAX_GENERATOR_CPU + 0.05, 0.2]


def test_a_lost_worker_makes_the_step_invalid_with_its_name_and_why(tmp_path):
    lost = {"complete": False, "error": "lost: no heartbeat", "plan": "{}",
            "worker": {"index": 1, "host": "loadbox", "pid": 4001}}
    result = collected(tmp_path, [worker_doc(0, [400] * 100), lost])
    assert not result.valid
    reason = next(r for r in result.invalid_reasons if r.code == GENERATOR_FAILED)
    assert reason.startswith("generator worker 1 (loadbox, pid 4001) did not complete")
    assert "lost: no heartbeat" in reason
    assert result.completed == 100  # the other worker's slice still counts as measured


def test_a_worker_lost_before_it_said_who_it_was_is_named_by_its_slice():
    assert worker_name({"index": 2}) == "generator worker 2"
    assert worker_name({"index": 2, "host": "loadbox"}) == "generator worker 2 (loadbox)"


@pytest.mark.parametrize("layout", [{"workers": 0}, {"workers": 2, "remote": 3},
                                    {"workers": 2, "remote": 1, "port": 0}])
def test_a_layout_that_cannot_run_is_refused(layout):
    with pytest.raises(ValueError):
        Distributed(**layout)


@pytest.mark.parametrize("args, says", [
    (["--generators", "2", "--processes", "2"], "not both"),
    (["--remote-generators", "1"], "needs --generators"),
    (["--master-port", "6000"], "needs --generators"),
    (["--master-bind-host", "0.0.0.0"], "needs --generators"),
    (["--generators", "1", "--remote-generators", "2"], "no more remote"),
])
def test_load_refuses_a_bad_combination_in_one_line(args, says, capsys, monkeypatch):
    from bench.cli import main
    monkeypatch.setattr(sys, "argv", ["seambench", "load", "http://127.0.0.1:1/", "--rate", "10",
                                      "--duration", "1", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == exitcodes.UNUSABLE
    assert len(err.strip().splitlines()) == 1 and says in err, err
