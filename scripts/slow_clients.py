"""Benchmark: does the public edge keep answering while slow clients hold connections?

For each placement and edge, the attack of tests/e2e/test_slow_clients.py (50 connections of
each slow kind, reopened when cut) for --seconds while a probe asks /healthz on a new
connection ten times a second; prints one JSON line: probes, unanswered (not 200 in 1 s),
the slowest answered one and how many slow connections were opened.

    .venv/bin/python scripts/slow_clients.py --seconds 30

A benchmark, not a test: about 2.5 minutes at the defaults. Loopback only, bounded in time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.system.launcher import LaunchSettings, launch  # noqa: E402
from shop.address import address_of  # noqa: E402
from shop.placement import load_topology  # noqa: E402
from tests.slowclients import probe, slow_clients  # noqa: E402

CASES = [("monolith", "nginx"), ("microservices", "nginx"), ("hybrid", "nginx"),
         ("monolith", "none"), ("microservices", "none")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--per-kind", type=int, default=50)
    args = parser.parse_args()
    for topology, edge in CASES:
        settings = replace(LaunchSettings(), scrypt_n=16, edge=edge)
        with launch(load_topology(topology), settings) as shop:
            address = address_of(shop.base_url)
            with slow_clients(address, args.per_kind) as attack:
                latencies = probe(address, args.seconds)
        answered = [x for x in latencies if x is not None]
        print(json.dumps({"placement": topology, "edge": edge, "probes": len(latencies),
                          "unanswered": latencies.count(None),
                          "slowest_ms": round(1000 * max(answered), 1) if answered else None,
                          "median_ms": round(1000 * statistics.median(answered), 2)
                          if answered else None,
                          "slow_connections_opened": attack.opened}), flush=True)


if __name__ == "__main__":
    main()
