"""Benchmark: how well a target's CPU and memory from /metrics match /proc, and what reading costs.

For each placement (started here, on loopback): ``--windows`` steps of failed logins at
``--rate`` for ``--duration`` s, each measured twice at once, by the local sampler (each
process's ns CPU clock, PSS) and by ``MetricsSampler`` (the servers' own /metrics, as
``seambench run --target`` reads a deployed placement); prints the CPU of each and their
ratio. Then the cost of reading: each placement idle for ``--idle`` s without readings and
with one reading every ``--period`` s, its CPU per second from /proc.

    .venv/bin/python scripts/target_resources.py
    .venv/bin/python scripts/target_resources.py --rate 150 --duration 4 --windows 3 --period 2

A benchmark, not a test: about a minute. Loopback only; stops what it starts.
"""
from __future__ import annotations

import argparse
import tempfile
import time

from bench.load.generator import TARGET, run_load
from bench.load.plan import LoadPlan
from bench.system.launcher import LaunchSettings, RunningShop, launch
from bench.system.sampler import ResourceSampler, window_usage
from bench.system.scrape import MetricsSampler
from shop.placement import load_topology

MIB = 2**20
FAILED_LOGIN = {"path": "/auth/login", "method": "POST",
                "json": {"username": "nobody", "password": "wrong-password"}}


def metrics_urls(shop: RunningShop) -> dict[str, str]:
    return {name: proc.url + "/metrics" for name, proc in shop.processes.items()}


def agreement(shop: RunningShop, rate: float, duration: float, period: float) -> str:
    """One step measured both ways: CPU s by /proc and by /metrics, and memory."""
    plan = LoadPlan(rate_per_s=rate, duration_s=duration, warmup_s=1,
                    output_dir=tempfile.mkdtemp(prefix="target-resources-"), options=FAILED_LOGIN)
    scraper = MetricsSampler(metrics_urls(shop), period_s=period)
    with scraper:
        result = run_load(TARGET, shop.base_url, plan,
                          watch={"pids": [p.pid for p in shop.processes.values()]})
    start, end = result.measure_start_s, result.measure_end_s
    local = window_usage(result.samples, "pids", start, end)
    scraped = window_usage(scraper.window_samples(start, end), "system", start, end)
    return (f"CPU /proc {local.cpu_s:.3f} s, /metrics {scraped.cpu_s:.3f} s, ratio "
            f"{scraped.cpu_s / local.cpu_s:.3f}; RSS {local.rss_bytes_max / MIB:.0f} and "
            f"{scraped.rss_bytes_max / MIB:.0f} MiB; PSS {(local.pss_bytes_max or 0) / MIB:.0f} MiB")


def idle_cpu_ms_per_s(shop: RunningShop, seconds: float, period: float | None) -> float:
    """CPU-ms per second the idle placement uses, read every ``period`` s (None: never)."""
    sampler = ResourceSampler({"pids": [p.pid for p in shop.processes.values()]}).start()
    start = time.time()
    if period is None:
        time.sleep(seconds)
    else:
        with MetricsSampler(metrics_urls(shop), period_s=period):
            time.sleep(seconds)
    end = time.time()
    return 1000 * window_usage(sampler.stop(), "pids", start, end).cpu_s / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", action="append", default=None)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--period", type=float, default=2.0, help="seconds between readings")
    parser.add_argument("--idle", type=float, default=20.0)
    args = parser.parse_args()
    for name in args.topology or ["microservices", "monolith"]:
        with launch(load_topology(name), LaunchSettings(scrypt_n=2**4, edge="none")) as shop:
            for _ in range(args.windows):
                # at least two readings inside the window, as the harness takes them
                print(f"{name}: {agreement(shop, args.rate, args.duration, min(args.period, args.duration / 4))}")
            time.sleep(2)
            quiet = idle_cpu_ms_per_s(shop, args.idle, None)
            read = idle_cpu_ms_per_s(shop, args.idle, args.period)
            print(f"{name}: idle {quiet:.1f} CPU-ms/s; read every {args.period:g} s "
                  f"{read:.1f} CPU-ms/s (+{read - quiet:.1f})")


if __name__ == "__main__":
    main()
