"""How often the journey's 95% intervals cover the truth, at the quick profile's own shape.

A simulated run has the quick profile's trials, and per step as many requests as its first
rung measures (``requests_per_step``, at least ``duration_s`` x rate). Latencies are
lognormal (median 2 ms, sigma 0.6) recorded into HdrHistogram's own buckets; placement B is
exactly ``TRUE_RATIO`` times A. Drift d moves every trial: a factor exp(N(0, d)) common to
the placements of a trial (the machine) and one exp(N(0, d/2)) of each step's own. CPU per
request drifts the same way. Every interval is computed by the functions the journey's
analysis uses, and the truths are known: the ratio is ``TRUE_RATIO``; a placement's q-th
percentile is that of the mixture over drift, exp(mu + z_q sqrt(sigma^2 + 1.25 d^2)); its CPU
per request is the mean over drift.

``python -m tests.bench.coverage`` prints the table docs/methodology.md quotes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.stats import norm

from bench.experiments.journey.analysis import percentile_estimates
from bench.experiments.journey.experiment import EXPERIMENT
from bench.experiments.journey.experiment import PROFILES as JOURNEY
from bench.results import hdr
from bench.results.model import QUANTILE
from bench.results.stats import (leave_one_out_percentiles, leave_one_out_ratio, over_trials,
                                 ratio_over_trials)
from bench.run import PROFILES

DRIFTS = (0.0, 0.05, 0.10, 0.20, 0.40)
TRUE_RATIO = 3.0
MU, SIGMA = np.log(2000.0), 0.6  # µs
CPU_MS = 1.0
KINDS = ("p50", "p99", "CPU per request", "ratio p50", "ratio p99", "ratio CPU",
         "A/A p99 significant")


@dataclass(frozen=True)
class Shape:
    trials: int
    requests: int  # per step, the mean of a Poisson count


def quick_shape() -> Shape:
    """The quick profile's trials and its first rung's requests per step."""
    journey = JOURNEY["quick"]
    rate = journey.rates[0]
    return Shape(EXPERIMENT.trials(journey, PROFILES["quick"].trials),
                 int(round(max(journey.duration_s, journey.requests_per_step / rate) * rate)))


@lru_cache(maxsize=1)
def buckets() -> np.ndarray:
    """HdrHistogram's bucket values (µs, each bucket's highest equivalent value) over the
    range a simulated latency can take."""
    h = hdr.new_histogram()
    top = h.get_counts_array_index(10_000_000)
    return np.unique([h.get_highest_equivalent_value(h.get_value_from_index(i)) for i in range(top + 1)])


def _counts(latencies: np.ndarray) -> np.ndarray:
    edges = buckets()
    return np.bincount(np.searchsorted(edges, latencies), minlength=len(edges))[:len(edges)]


def simulate(shape: Shape, drift: float, repetitions: int, seed: int) -> dict[str, float]:
    """Coverage of each interval kind (and how often A/A was called significant)."""
    rng = np.random.default_rng(seed)
    spread = np.sqrt(SIGMA ** 2 + 1.25 * drift ** 2)
    truth = {q: float(np.exp(MU + norm.ppf(QUANTILE[q].q / 100) * spread)) for q in ("p50", "p99")}
    truth_cpu = CPU_MS * float(np.exp(1.25 * drift ** 2 / 2))
    hits = dict.fromkeys(KINDS, 0)
    values = buckets()
    for _ in range(repetitions):
        machine = rng.normal(0, drift, shape.trials)
        sides = []
        for scale in (1.0, TRUE_RATIO, 1.0):  # A, B, and A again (the A/A pair)
            rows, cpu, served = [], [], []
            for t in range(shape.trials):
                factor = np.exp(machine[t] + rng.normal(0, drift / 2))
                n = rng.poisson(shape.requests)
                rows.append(_counts(scale * factor * rng.lognormal(MU, SIGMA, n)))
                cpu.append(scale * factor * CPU_MS * n * rng.gamma(50, 1 / 50))
                served.append(n)
            sides.append((np.array(rows), cpu, served))
        (a, cpu_a, served_a), (b, cpu_b, served_b), (c, _, _) = sides
        est = percentile_estimates(a, values, [QUANTILE["p50"], QUANTILE["p99"]])
        for q in ("p50", "p99"):
            hits[q] += est[q].low <= truth[q] <= est[q].high
            r = ratio_over_trials(leave_one_out_percentiles(a, values, QUANTILE[q].q),
                                  leave_one_out_percentiles(b, values, QUANTILE[q].q))
            hits[f"ratio {q}"] += r.low <= TRUE_RATIO <= r.high
        cpu = over_trials(*leave_one_out_ratio(cpu_a, served_a))
        hits["CPU per request"] += cpu.low <= truth_cpu <= cpu.high
        r = ratio_over_trials(leave_one_out_ratio(cpu_a, served_a), leave_one_out_ratio(cpu_b, served_b))
        hits["ratio CPU"] += r.low <= TRUE_RATIO <= r.high
        same = ratio_over_trials(leave_one_out_percentiles(a, values, 99.0),
                                 leave_one_out_percentiles(c, values, 99.0))
        hits["A/A p99 significant"] += same.significant
    return {kind: n / repetitions for kind, n in hits.items()}


def table(repetitions: int = 2000, seed: int = 1) -> str:
    shape = quick_shape()
    lines = [f"{shape.trials} trials, ~{shape.requests} requests per step, "
             f"{repetitions} simulated runs per row",
             "| drift | " + " | ".join(KINDS) + " |", "|---" * (len(KINDS) + 1) + "|"]
    for i, drift in enumerate(DRIFTS):
        found = simulate(shape, drift, repetitions, seed + i)
        lines.append(f"| {drift:.0%} | " + " | ".join(f"{found[k]:.1%}" for k in KINDS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
