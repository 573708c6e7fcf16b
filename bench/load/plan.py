"""What one open-loop load generator process is asked to do, and its arrival schedule.

The harness writes a ``LoadPlan`` as JSON and points the Locust process at it through
``PLAN_ENV``; the locustfile reads it back (a distributed run's workers get it from their
master instead: ``bench.load.coordination``). Nothing here imports Locust or gevent.
"""
from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

PLAN_ENV = "SEAMBENCH_LOAD_PLAN"
ARRIVALS = ("constant", "poisson")


@dataclass(frozen=True)
class LoadPlan:
    """An open-loop schedule for one generator process.

    Requests are *scheduled* at ``rate_per_s`` for ``warmup_s + duration_s`` seconds; every
    latency is measured from a request's intended send time, in µs. Requests intended in
    the first ``warmup_s`` seconds are sent but not recorded.
    """

    rate_per_s: float
    duration_s: float
    output_dir: str
    warmup_s: float = 0.0
    arrival: str = "constant"  # or "poisson" (exponential gaps from a seeded generator)
    seed: int = 1
    process_index: int = 0
    max_in_flight: int = 1000  # an arrival finding this many requests in flight is dropped
    connections: int = 64  # keep-alive connections to the target
    drain_timeout_s: float = 30.0  # after the last arrival, wait this long for stragglers
    options: dict[str, Any] = field(default_factory=dict)  # scenario-specific settings
    # Request names sent past the system under test (a floor measured alongside it): their
    # interval histograms go to ``reference_log_path``, so they count toward no figure of
    # the system's.
    reference: tuple[str, ...] = ()
    # A schedule dealt among this many generators (``deal``): this plan sends the arrivals
    # k of the whole schedule with k % slices == process_index. 1: the whole schedule.
    slices: int = 1

    def __post_init__(self) -> None:
        if not self.rate_per_s > 0:
            raise ValueError(f"rate must be positive, not {self.rate_per_s}")
        if not self.duration_s > 0 or self.warmup_s < 0:
            raise ValueError("duration must be positive and warm-up not negative")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, not {self.arrival!r}")
        if self.max_in_flight < 1 or self.connections < 1:
            raise ValueError("max_in_flight and connections must be at least 1")
        if self.slices < 1 or (self.slices > 1 and not 0 <= self.process_index < self.slices):
            raise ValueError(f"generator {self.process_index} has no slice of a schedule dealt "
                             f"among {self.slices}")

    @property
    def total_s(self) -> float:
        return self.warmup_s + self.duration_s

    @property
    def own_rate_per_s(self) -> float:
        """Arrivals per second this generator sends: its share of a dealt schedule."""
        return self.rate_per_s / self.slices

    def result_path(self) -> Path:
        return Path(self.output_dir) / f"load-{self.process_index}.json"

    def interval_log_path(self) -> Path:
        return Path(self.output_dir) / f"intervals-{self.process_index}.hlog"

    def reference_log_path(self) -> Path:
        return Path(self.output_dir) / f"intervals-reference-{self.process_index}.hlog"

    def observed_log_path(self) -> Path:
        """What the scenario read from its answers (``OpenLoopUser.observe``)."""
        return Path(self.output_dir) / f"intervals-observed-{self.process_index}.hlog"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "LoadPlan":
        doc = json.loads(text)
        return cls(**{**doc, "reference": tuple(doc.get("reference", ()))})


def plan_from_env() -> LoadPlan:
    """The plan ``PLAN_ENV`` names; without one, 60 s at 50 req/s into ./load-out."""
    path = os.environ.get(PLAN_ENV)
    if path:
        return LoadPlan.from_json(Path(path).read_text())
    return LoadPlan(rate_per_s=50, duration_s=60, warmup_s=5, output_dir="load-out")


def arrival_offsets_ns(plan: LoadPlan) -> Iterator[int]:
    """Intended send times, ns after the schedule's start, strictly inside [0, total_s): the
    plan's slice of them when the schedule is dealt (``deal``).

    Constant: evenly spaced at 1/rate. Poisson: exponential gaps with mean 1/rate drawn from
    ``random.Random(plan.seed)``, so the same plan gives the same schedule."""
    offsets = _schedule_ns(plan)
    if plan.slices == 1:
        return offsets
    return islice(offsets, plan.process_index, None, plan.slices)


def _schedule_ns(plan: LoadPlan) -> Iterator[int]:
    end_ns = int(plan.total_s * 1e9)
    if plan.arrival == "constant":
        gap_ns = 1e9 / plan.rate_per_s
        i = 0
        while (offset := int(i * gap_ns)) < end_ns:
            yield offset
            i += 1
        return
    rng = random.Random(plan.seed)
    t = rng.expovariate(plan.rate_per_s) * 1e9
    while t < end_ns:
        yield int(t)
        t += rng.expovariate(plan.rate_per_s) * 1e9


def split(plan: LoadPlan, processes: int) -> list[LoadPlan]:
    """One plan per generator process, each at rate/processes with its own seed, so the
    superposition is the asked-for rate (for Poisson, exactly a Poisson process again)."""
    if processes < 1:
        raise ValueError("at least one generator process")
    base = asdict(plan)
    out = []
    for i in range(processes):
        # Constant schedules are staggered so the processes do not fire in lockstep.
        options = dict(base["options"], phase_ns=int(i * 1e9 / plan.rate_per_s))
        out.append(LoadPlan(**{**base, "rate_per_s": plan.rate_per_s / processes,
                               "seed": plan.seed * 1000 + i, "process_index": i,
                               "options": options}))
    return out


def deal(plan: LoadPlan, generators: int) -> list[LoadPlan]:
    """One plan per generator of a distributed run, all on the one schedule a single
    generator process would send (``split(plan, 1)``, the same seed): generator i sends its
    arrivals i, i + n, i + 2n, ... (n = ``generators``), so together, from one shared start
    time, they send exactly that schedule. ``rate_per_s`` stays the whole schedule's."""
    if generators < 1:
        raise ValueError("at least one generator")
    whole = split(plan, 1)[0]
    return [replace(whole, slices=generators, process_index=i) for i in range(generators)]
