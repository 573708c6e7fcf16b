"""Benchmark: one schedule sent by one generator and by Locust's master with N workers.

The ground-truth server (tests/bench/truth_server.py; by default every request held exactly
2 ms, so p50 is 2 ms plus the loopback floor), pinned to CPU 1, is driven by ``seambench
load`` at the same rate and seed (so the same schedule) with one generator process and with
``--generators N`` (master and workers pinned to CPU 0), in ``--rounds`` rounds whose order
turns, so drift does not favour one. Each run prints the requests it measured against the
schedule's count, p50, p99 and send lateness (its median, and the worst worker's p99); each
round the p50 ratio. Done when (issue 22): every count exact, p50 within 5% of one
generator's. ``--with-processes`` adds ``--processes N`` to each round: N processes on the one
CPU without Locust's master, to tell what the split costs from what the master/worker mode does.

    .venv/bin/python scripts/distributed_generators.py --rate 200 --duration 20 --rounds 3

A benchmark, not a test: about (duration + 10 s) a run, two or three runs a round. Loopback only.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load.plan import LoadPlan, arrival_offsets_ns, split  # noqa: E402
from bench.results import hdr  # noqa: E402

SEAMBENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
TRUTH_SERVER = ROOT / "tests" / "bench" / "truth_server.py"
WARMUP_S = 1.0  # `seambench load`'s default
P50_WITHIN = 0.05


def start_truth_server(slow_every: int, slow_ms: float, cpu: str) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(["taskset", "-c", cpu, sys.executable, str(TRUTH_SERVER),
                               str(slow_every), str(slow_ms)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    return server, f"http://127.0.0.1:{int(server.stdout.readline())}/"


def scheduled_count(rate: float, duration: float, seed: int) -> int:
    """Arrivals of one generator's schedule in the measured window (what both must send)."""
    plan = split(LoadPlan(rate_per_s=rate, duration_s=duration, warmup_s=WARMUP_S,
                          arrival="poisson", seed=seed, output_dir="."), 1)[0]
    return sum(1 for t in arrival_offsets_ns(plan) if t >= WARMUP_S * 1e9)


def run_load(url: str, rate: float, duration: float, seed: int, mode: list[str],
             cpu: str) -> dict:
    """``seambench load`` with the options ``mode`` adds; its figures (µs)."""
    with tempfile.TemporaryDirectory(prefix="distributed-generators-") as keep:
        done = subprocess.run(["taskset", "-c", cpu, *SEAMBENCH, "load", url, "--rate", f"{rate:g}",
                               "--duration", f"{duration:g}", "--seed", str(seed), "--json",
                               "--keep", keep, *mode], capture_output=True, text=True, cwd=ROOT)
        if done.returncode not in (0, 3) or not done.stdout.strip():  # 3: measured but invalid
            raise RuntimeError(f"seambench load failed:\n{done.stderr[-2000:]}")
        # how late the sends were at the median, every generator's sends together
        lateness = hdr.merge(hdr.decode(json.loads(p.read_text())["lateness_histogram"])
                             for p in Path(keep).glob("load-*.json"))
    doc = json.loads(done.stdout)
    worst = max([w["send_lateness_p99_us"] for w in doc.get("workers", [])]
                or [doc["send_lateness_p99_us"]])
    return {"scheduled": doc["scheduled"], "requests": doc["requests"],
            "p50_us": doc["p50_us"], "p99_us": doc["p99_us"],
            "lateness_p50_us": lateness.get_value_at_percentile(50), "worst_lateness_p99_us": worst,
            "generator_cpu": doc["generator_cpu"], "valid": doc["valid"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--with-processes", action="store_true",
                        help="also `--processes N` each round: what N processes on one CPU cost "
                             "without Locust's master (its schedule is N streams, not the one)")
    parser.add_argument("--slow-every", type=int, default=1, help="the truth server: every Nth request ...")
    parser.add_argument("--slow-ms", type=float, default=2.0, help="... is held this long")
    parser.add_argument("--server-cpu", default="1")
    parser.add_argument("--client-cpu", default="0")
    args = parser.parse_args()
    n = str(args.generators)
    modes = {"one": [], f"generators {n}": ["--generators", n]}
    if args.with_processes:
        modes[f"processes {n}"] = ["--processes", n]
    server, url = start_truth_server(args.slow_every, args.slow_ms, args.server_cpu)
    ratios: dict[str, list[float]] = {name: [] for name in modes if name != "one"}
    exact = True
    try:
        for round_ in range(args.rounds):
            seed = round_ + 1
            expected = scheduled_count(args.rate, args.duration, seed)
            # the order turns between rounds, so drift does not favour whoever goes first
            names = list(modes)[round_ % len(modes):] + list(modes)[:round_ % len(modes)]
            runs = {}
            for name in names:
                r = runs[name] = run_load(url, args.rate, args.duration, seed, modes[name],
                                          args.client_cpu)
                if not name.startswith("processes"):  # the others send the one schedule
                    exact &= r["scheduled"] == r["requests"] == expected
                print(f"round {round_ + 1} {name}: schedule {expected}, " + ", ".join(
                    f"{k} {v}" for k, v in r.items()), flush=True)
            for name in ratios:
                ratios[name].append(runs[name]["p50_us"] / runs["one"]["p50_us"])
                print(f"round {round_ + 1}: p50 {name} / one = {ratios[name][-1]:.3f}", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
    for name, values in ratios.items():
        print(f"p50 {name} / one, per round: {', '.join(f'{r:.3f}' for r in values)}; median "
              f"{statistics.median(values):.3f}; every round within {P50_WITHIN:.0%}: "
              f"{all(abs(r - 1) <= P50_WITHIN for r in values)}")
    print(f"every count of the one schedule exact: {exact}")


if __name__ == "__main__":
    main()
