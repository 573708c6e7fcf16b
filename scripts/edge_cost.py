"""Benchmark: what the nginx edge adds to one public request, in each placement.

Each placement is started once with the edge (bench/system/edge.py), pinned like a run
(shop and nginx on the system's CPUs, the generator on its own). The same open-loop load
(the generator of `seambench load`: µs HDR histograms from each request's intended send)
then goes, round after round, to the edge and straight to the public process behind it,
in a random order per round, so drift hits both. A round's cost is p50(edge) - p50(direct);
the estimate is the mean over rounds with a 95% t interval. nginx's CPU per request is its
CPU time over the edge's rounds divided by their requests.

    .venv/bin/python scripts/edge_cost.py --rounds 6 --rate 200 --duration 5

A benchmark, not a test: about 2 minutes per placement at the defaults. Loopback only.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load.generator import TARGET, run_load  # noqa: E402
from bench.load.plan import LoadPlan  # noqa: E402
from bench.results.stats import t_estimate  # noqa: E402
from bench.run import cpu_plan  # noqa: E402
from bench.system.launcher import LaunchSettings, launch  # noqa: E402
from shop.placement import load_topology  # noqa: E402


def p50_us(base_url: str, path: str, args: argparse.Namespace, seed: int,
           cpus: tuple[int, ...] | None) -> tuple[int, int, int]:
    """(p50 µs, p99 µs, requests) of one open-loop round against ``base_url + path``."""
    with tempfile.TemporaryDirectory(prefix="seambench-edge-") as scratch:
        plan = LoadPlan(rate_per_s=args.rate, duration_s=args.duration, warmup_s=1.0,
                        arrival="poisson", seed=seed, connections=16, output_dir=scratch,
                        options={"path": path, "method": "GET"})
        result = run_load(TARGET, base_url, plan, 1, cpus)
    if not result.valid or result.errors:
        raise SystemExit(f"round against {base_url} not valid: {result.invalid_reasons}, "
                         f"{result.errors} errors")
    h = result.latency()
    return h.get_value_at_percentile(50), h.get_value_at_percentile(99), result.completed


def measure(topology: str, args: argparse.Namespace) -> dict:
    cpus = cpu_plan()
    settings = replace(LaunchSettings(), edge="nginx", cpus=cpus.system, scrypt_n=2**4)
    rng = random.Random(args.seed)
    with launch(load_topology(topology), settings) as shop:
        assert shop.edge is not None
        nginx = psutil.Process(shop.edge.popen.pid)
        targets = {"edge": shop.base_url, "direct": shop.public_process_url}
        rounds: dict[str, list[tuple[int, int]]] = {"edge": [], "direct": []}
        edge_cpu_s, edge_requests = 0.0, 0
        for r in range(args.rounds):
            for name in rng.sample(list(targets), 2):
                before = sum(nginx.cpu_times()[:2])
                p50, p99, n = p50_us(targets[name], args.path, args, args.seed + r, cpus.generator)
                if name == "edge":
                    edge_cpu_s += sum(nginx.cpu_times()[:2]) - before
                    edge_requests += n
                rounds[name].append((p50, p99))
    diffs = [e[0] - d[0] for e, d in zip(rounds["edge"], rounds["direct"])]
    cost = t_estimate(diffs)
    return {"placement": topology, "path": args.path, "rounds": args.rounds,
            "p50_edge_us": statistics.median(x[0] for x in rounds["edge"]),
            "p50_direct_us": statistics.median(x[0] for x in rounds["direct"]),
            "p99_edge_us": statistics.median(x[1] for x in rounds["edge"]),
            "p99_direct_us": statistics.median(x[1] for x in rounds["direct"]),
            "p50_cost_us": round(cost.value, 1), "p50_cost_ci95_us": [round(cost.low, 1),
                                                                      round(cost.high, 1)],
            "nginx_cpu_us_per_request": round(1e6 * edge_cpu_s / max(1, edge_requests), 1),
            "cpus": cpus.note}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", action="append", default=None,
                        help="placements (repeatable; default monolith, microservices, hybrid)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=5.0, help="measured s per round")
    parser.add_argument("--path", default="/healthz")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for topology in args.topology or ["monolith", "microservices", "hybrid"]:
        print(json.dumps(measure(topology, args)), flush=True)


if __name__ == "__main__":
    main()
