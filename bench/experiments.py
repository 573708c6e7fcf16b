"""Trial plans and their execution: placements x experiments x rates x trials, interleaved.

Every placement is started once, pinned to the system's CPU set; the generators (and this
process) run on the others. Then, trial by trial, each step runs in every placement back
to back (A B, then B A in the next trial), so drift in the machine hits all placements
alike. Each step is one open-loop load run with its warm-up discarded; its results go to
the ``RunStore`` at once, so an interrupted run keeps every finished step.

Experiments:
  hops     ``GET /chain?k=`` for k = 0..4 in turn, at a low constant rate (the unloaded cost of
           a call, not queueing), plus the raw TCP, raw HTTP and bare-hop floors
  journey  the user mix at each rate of the ladder; notification lag read from notify's DB
"""
from __future__ import annotations

import os
import sqlite3
import time
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench import hdr
from bench.floors import FloorServers, floor_servers, http_round_trips, pinned, tcp_round_trips
from bench.launcher import LaunchError, LaunchSettings, RunningShop, launch
from bench.loadgen import LoadResult, run_load
from bench.loadplan import LoadPlan
from bench.session import ShopSession
from bench.recorder import tag_of
from bench.sampler import window_usage
from bench.store import FLOORS, REQUESTS, RESOURCES, STEPS, TIMESERIES, RunStore
from shop.placement import Topology
from shop.storage import sqlite_path

PERCENTILES = {"p50_us": 50, "p90_us": 90, "p99_us": 99, "p999_us": 99.9}
FLOOR_HTTP, FLOOR_NESTED = "floor http", "floor nested"  # request names in the hop step


@dataclass(frozen=True)
class Profile:
    """How long and how often: the only difference between a quick and a full run."""

    name: str
    trials: int
    hop_rate: float  # req/s over all k together, evenly spaced: low, so chains never overlap
    hop_warmup_s: float
    hop_duration_s: float
    journey_rates: tuple[float, ...]  # req/s, the ladder
    journey_warmup_s: float
    journey_duration_s: float
    floor_round_trips: int  # per floor and trial, paced at hop_rate
    bootstrap_resamples: int
    users: int = 8  # journey users per placement

    def planned_seconds(self, placements: int) -> float:
        """Load time the plan asks for (without start-up and per-step overheads)."""
        per_trial = (self.hop_warmup_s + self.hop_duration_s
                     + len(self.journey_rates) * (self.journey_warmup_s + self.journey_duration_s))
        return per_trial * placements * self.trials


PROFILES = {
    # ~4.5 minutes on a 2-core machine with two placements (measured; see README)
    "quick": Profile("quick", trials=3, hop_rate=50, hop_warmup_s=1, hop_duration_s=10,
                     journey_rates=(50, 120, 200, 300), journey_warmup_s=1.5, journey_duration_s=4,
                     floor_round_trips=100, bootstrap_resamples=1000),
    "full": Profile("full", trials=5, hop_rate=50, hop_warmup_s=2, hop_duration_s=40,
                    journey_rates=(50, 100, 200, 300, 400, 500, 600, 800), journey_warmup_s=5,
                    journey_duration_s=20, floor_round_trips=500, bootstrap_resamples=2000),
    # seconds per trial: for tests of the harness itself, not for figures
    "smoke": Profile("smoke", trials=2, hop_rate=50, hop_warmup_s=0.5, hop_duration_s=1.5,
                     journey_rates=(30,), journey_warmup_s=0.5, journey_duration_s=1.5,
                     floor_round_trips=30, bootstrap_resamples=200, users=2),
}


@dataclass(frozen=True)
class CpuPlan:
    system: tuple[int, ...] | None  # the topology's processes and the floor servers
    generator: tuple[int, ...] | None  # Locust processes and the harness
    note: str


def cpu_plan(available: set[int] | None = None) -> CpuPlan:
    """Split the CPUs: a quarter (at least one) for the generator, the rest for the system."""
    cpus = sorted(available if available is not None else os.sched_getaffinity(0))
    if len(cpus) < 2:
        return CpuPlan(None, None, f"only {len(cpus)} CPU: system and generator share it, "
                                   "so latencies include the generator's own work")
    n_gen = max(1, len(cpus) // 4)
    gen, system = tuple(cpus[:n_gen]), tuple(cpus[n_gen:])
    return CpuPlan(system, gen, f"{len(cpus)} CPUs: system under test (every placement, and the "
                                f"floor servers) on CPU {_cpus(system)}; load generator and harness "
                                f"on CPU {_cpus(gen)}")


def _cpus(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus))


@dataclass(frozen=True)
class RunConfig:
    profile: Profile
    topologies: tuple[Topology, ...]
    launch: LaunchSettings
    cpus: CpuPlan
    seed: int = 1
    arrival: str = "poisson"
    generator_processes: int = 1
    p99_objective_ms: float = 50.0

    def describe(self) -> dict[str, Any]:
        """The full configuration as plain data, for the manifest."""
        return {"profile": asdict(self.profile), "topologies": [asdict(t) for t in self.topologies],
                "launch": asdict(self.launch), "cpus": asdict(self.cpus), "seed": self.seed,
                "arrival": self.arrival, "generator_processes": self.generator_processes,
                "p99_objective_ms": self.p99_objective_ms}


@dataclass(frozen=True)
class Step:
    experiment: str  # "hops" or "journey"
    placement: str
    rate: float
    trial: int
    seed: int  # the same for every placement of one (experiment, rate, trial): same arrivals

    @property
    def slug(self) -> str:
        return f"{self.experiment}-{self.placement}-r{self.rate:g}-t{self.trial}"

    @property
    def keys(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "placement": self.placement,
                "rate": self.rate, "trial": self.trial}


def plan_steps(config: RunConfig) -> list[Step]:
    """Every step in the order it runs: trial by trial; within a trial, each experiment and
    rate in every placement back to back. The placement order rotates from one rung to the
    next and from one trial to the next, so no placement always goes first."""
    names = [t.name for t in config.topologies]
    profile = config.profile
    steps = []
    rungs = [("hops", profile.hop_rate)] + [("journey", r) for r in profile.journey_rates]
    for trial in range(profile.trials):
        for index, (experiment, rate) in enumerate(rungs):
            shift = (trial + index) % len(names)
            order = names[shift:] + names[:shift]
            seed = zlib.crc32(f"{config.seed}/{experiment}/{rate}/{trial}".encode())
            steps.extend(Step(experiment, name, rate, trial, seed) for name in order)
    return steps


@dataclass
class Progress:
    """Called after each step: (steps done, steps planned, what just ran)."""

    on_step: Callable[[int, int, str], None] = lambda done, total, what: None
    on_phase: Callable[[str], None] = lambda what: None


@dataclass
class Harness:
    config: RunConfig
    store: RunStore
    progress: Progress = field(default_factory=Progress)

    def run(self) -> None:
        """Start everything, run every step, stop everything. Raises on a dead process."""
        config = self.config
        settings = replace(config.launch, cpus=config.cpus.system)
        steps = plan_steps(config)
        with ExitStack() as stack, pinned(config.cpus.generator):
            self.progress.on_phase("starting the floor servers")
            floors = stack.enter_context(floor_servers(settings, self.store.dir / "logs"))
            shops: dict[str, RunningShop] = {}
            users: dict[str, list[dict[str, str]]] = {}
            tokens: dict[str, list[str]] = {}
            for topology in config.topologies:
                self.progress.on_phase(f"starting {topology.name}")
                shops[topology.name] = stack.enter_context(launch(topology, settings))
                users[topology.name] = journey_users(shops[topology.name].base_url,
                                                     config.profile.users)
            for i, step in enumerate(steps):
                if i == 0 or steps[i - 1].trial != step.trial:
                    self.progress.on_phase(f"trial {step.trial + 1}: floors")
                    self._floors(floors, step.trial)
                    # fresh tokens each trial: a long run must not outlive them (1 h)
                    tokens = {name: log_in(shops[name].base_url, users[name]) for name in shops}
                self._step(step, shops[step.placement], tokens[step.placement], floors)
                self.store.flush()
                self.progress.on_step(i + 1, len(steps), step.slug)

    def _floors(self, floors, trial: int) -> None:
        n = self.config.profile.floor_round_trips
        gap = 1 / self.config.profile.hop_rate  # paced like the hop step's requests
        with pinned(self.config.cpus.system):
            measured = {"tcp": tcp_round_trips(floors.tcp_address, n, gap_s=gap),
                        "http": http_round_trips(floors.http_url, n, gap_s=gap),
                        "http_nested": http_round_trips(floors.front_url, n, path="/nested", gap_s=gap)}
        for kind, blocks in measured.items():
            for i, histogram in enumerate(blocks):
                row = {"floor": kind, "trial": trial, "block": i, "count": histogram.get_total_count(),
                       **{k: histogram.get_value_at_percentile(q) for k, q in PERCENTILES.items()},
                       "max_us": histogram.get_max_value(), "histogram": hdr.encode(histogram)}
                self.store.add_rows(FLOORS, [row])

    def _step(self, step: Step, shop: RunningShop, tokens: list[str], floors: FloorServers) -> None:
        config, profile = self.config, self.config.profile
        hops = step.experiment == "hops"
        options: dict[str, Any] = ({"hops": [0, 1, 2, 3, 4],
                                    "floors": {FLOOR_HTTP: floors.http_url + "/",
                                               FLOOR_NESTED: floors.front_url + "/nested"}} if hops else
                                   {"tokens": tokens, "skus": min(1000, config.launch.search.catalog_size)})
        plan = LoadPlan(rate_per_s=step.rate,
                        duration_s=profile.hop_duration_s if hops else profile.journey_duration_s,
                        warmup_s=profile.hop_warmup_s if hops else profile.journey_warmup_s,
                        output_dir=str(self.store.raw_dir(step.slug)),
                        arrival="constant" if hops else config.arrival,
                        seed=step.seed, options=options)
        watch = {"system": [p.pid for p in shop.processes.values()]}
        result = run_load("hopchain" if hops else "journey", shop.base_url, plan,
                          config.generator_processes, config.cpus.generator, watch)
        dead = shop.dead()
        if dead:
            raise LaunchError(f"during {step.slug}, {dead[0].exit_report()}")
        lag = None if hops else notification_lag(shop, result)
        self._record(step, result, lag)

    def _record(self, step: Step, result: LoadResult, lag: "LagReading | None") -> None:
        store = self.store
        usage = window_usage(result.samples, "system", result.measure_start_s, result.measure_end_s)
        completed = result.completed
        # the floor requests of the hop step never reach the shop: not in its CPU per request
        shop_completed = sum(n.completed for name, n in result.names.items()
                             if not name.startswith("floor "))
        row = {**step.keys, "seed": step.seed, "valid": result.valid,
               "invalid_reasons": "; ".join(result.invalid_reasons),
               "scheduled": result.scheduled, "completed": completed, "errors": result.errors,
               "dropped": result.dropped, "unfinished": result.unfinished,
               "duration_s": round(result.duration_s, 3),
               "scheduled_rate": round(result.scheduled_rate, 2),
               "achieved_rate": round(result.achieved_rate, 2),
               "completed_in_time": result.completed_in_time,
               "system_cpu_s": round(usage.cpu_s, 4), "system_processes": usage.processes,
               "shop_completed": shop_completed,
               "cpu_ms_per_request": round(usage.cpu_s * 1000 / shop_completed, 4) if shop_completed else None,
               "system_rss_max_bytes": usage.rss_bytes_max,
               "generator_cpu": round(max(result.generator_cpu, default=0), 3),
               "lateness_p50_us": result.lateness.get_value_at_percentile(50),
               "lateness_p99_us": result.lateness.get_value_at_percentile(99),
               "lateness_max_us": result.lateness.get_max_value(),
               "measure_start_s": result.measure_start_s, "measure_end_s": result.measure_end_s,
               "raw_dir": f"raw/{step.slug}"}
        if lag is not None:
            row.update(notifications=lag.histogram.get_total_count(), payments=lag.payments,
                       lag_p50_us=lag.histogram.get_value_at_percentile(50),
                       lag_p99_us=lag.histogram.get_value_at_percentile(99),
                       lag_max_us=lag.histogram.get_max_value())
            self._histogram(step, "notification_lag", lag.histogram, result)
        store.add_rows(STEPS, [row])
        for name, n in sorted(result.names.items()):
            store.add_rows(REQUESTS, [{
                **step.keys, "name": name, "ok": n.ok, "errors": n.errors, "dropped": n.dropped,
                "completed": n.completed,
                **{k: n.latency.get_value_at_percentile(q) for k, q in PERCENTILES.items()},
                "max_us": n.latency.get_max_value(),
                "service_p50_us": n.service.get_value_at_percentile(50),
                "service_p99_us": n.service.get_value_at_percentile(99),
                "statuses": " ".join(f"{s}:{c}" for s, c in sorted(n.statuses.items()))}])
            self._histogram(step, name, n.latency, result)
        store.add_rows(TIMESERIES, ({**step.keys, **r} for r in result.timeseries))
        store.add_rows(RESOURCES, ({**step.keys, **asdict(s)} for s in result.samples))

    def _histogram(self, step: Step, name: str, histogram, result: LoadResult) -> None:
        start = result.measure_start_s - float(self.store.manifest.get("started_at", 0))
        self.store.add_histogram(f"{step.experiment}/{step.placement}/r{step.rate:g}/t{step.trial}/"
                                 f"{tag_of(name)}", start, result.duration_s, hdr.encode(histogram),
                                 histogram.get_max_value() / 1000)


def journey_users(base_url: str, count: int) -> list[dict[str, str]]:
    """Register and fund ``count`` users; their credentials (set-up, not measured)."""
    users = []
    session = ShopSession(base_url)
    try:
        run = os.urandom(4).hex()
        for i in range(count):
            body = {"username": f"h{run}-{i}", "password": "harness-password"}
            session.token = ""
            session.expect(201, "POST", "/auth/register", body)
            session.token = session.expect(200, "POST", "/auth/login", body)["token"]
            for _ in range(4):
                session.expect(200, "POST", "/billing/topup", {"amount_cents": 10_000_000})
            users.append(body)
    finally:
        session.close()
    return users


def log_in(base_url: str, users: list[dict[str, str]]) -> list[str]:
    """A bearer token for each user."""
    session = ShopSession(base_url)
    try:
        return [session.expect(200, "POST", "/auth/login", body)["token"] for body in users]
    finally:
        session.close()


@dataclass(frozen=True)
class LagReading:
    histogram: Any  # HdrHistogram of notification lag, µs
    payments: int  # orders paid in the window (each should have been notified once)


def notification_lag(shop: RunningShop, result: LoadResult, settle_s: float = 5.0) -> LagReading:
    """Lag of every notification for a payment made in the measured window, read from
    notify's database once every such payment is notified (or ``settle_s`` has passed)."""
    start, end = result.measure_start_s, result.measure_end_s
    deployment = shop.deployment
    deadline = time.monotonic() + settle_s
    while True:
        payments = _count(deployment.database_url("billing"),
                          "SELECT count(*) FROM billing_orders WHERE created_at >= ? AND created_at < ?",
                          (start, end))
        lags = _rows(deployment.database_url("notify"),
                     "SELECT lag_ms FROM notify_notifications WHERE occurred_at >= ? AND occurred_at < ?",
                     (start, end))
        if len(lags) >= payments or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    histogram = hdr.new_histogram()
    for (lag_ms,) in lags:
        histogram.record_value(max(1, round(lag_ms * 1000)))
    return LagReading(histogram, payments)


def _rows(url: str, sql: str, params: tuple) -> list[tuple]:
    conn = sqlite3.connect(f"file:{sqlite_path(url)}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _count(url: str, sql: str, params: tuple) -> int:
    return _rows(url, sql, params)[0][0]

