"""A run's lifecycle: start the placements, interleave every experiment's steps across
placements and trials, sample, store, and summarise. ``execute`` is the whole of
``seambench run`` but the argument parsing and printing, so a test can call it.

Every placement is started once, pinned to the system's CPU set; the generators (and this
process) run on the others. Then, trial by trial, each experiment's rungs run in every
placement back to back, in an order drawn at random for each rung of each trial, so drift
in the machine hits all placements alike and each trial yields one *pair* per rung. Each
step is one open-loop load run with its warm-up discarded; its result goes to the
``RunStore`` at once, so an interrupted run keeps every finished step. A rung of a trial
that the harness spoiled (``StepResult.spoiled``) is measured once more at the end.
"""
from __future__ import annotations

import logging
import os
import random
import time
import zlib
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.experiments import Experiment, Progress, Rung, RunSession, default_run, get
from bench.experiments.base import step_key
from bench.experiments.limits import settings_with
from bench.load.generator import LoadError, LoadResult, run_load, worker_problems
from bench.load.plan import LoadPlan
from bench.results.codec import decode, encode
from bench.results.model import (EXIT_FAILED, EXIT_INTERRUPTED, LATE_SENDS, RESOURCES_UNREAD,
                                 Invalid, StepKey, StepResult)
from bench.results.store import CALLS, RESOURCES, RunStore
from bench.system.deployed import DeployedShop, Target, TargetError, connect
from bench.system.fingerprint import fingerprint
from bench.system.gitref import ShopSource
from bench.system.launcher import LaunchError, LaunchSettings, launch
from bench.system.processes import pinned, signals_held, stop_requested
from bench.system.sampler import window_usage
from bench.system.scrape import MetricsSampler
from bench.system.shopquery import ShopQueryError, count_rows, shop_counts
from shop.placement import Topology
from shop.tracing import TraceExport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """How long and how often, for the core; each experiment has its own settings per
    profile name (see its module)."""

    name: str
    trials: int
    bootstrap_resamples: int
    # Steps the harness spoiled are measured again only while the run is younger than this
    # (s, from its start); the rest stay "not measured". None: always.
    again_within_s: float | None = None


PROFILES = {
    # an experiment may make more, shorter trials of its own (its settings): intervals are
    # over trials, Student-t with k - 1 degrees of freedom
    "quick": Profile("quick", trials=3, bootstrap_resamples=1000,  # ~5 min on 2 cores
                     again_within_s=280),
    "full": Profile("full", trials=5, bootstrap_resamples=2000),
    "smoke": Profile("smoke", trials=2, bootstrap_resamples=200),  # for tests of the harness
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
    names = {"system": ",".join(map(str, system)), "gen": ",".join(map(str, gen))}
    return CpuPlan(system, gen, f"{len(cpus)} CPUs: system under test (every placement, and the "
                                f"floor servers) on CPU {names['system']}; load generator and "
                                f"harness on CPU {names['gen']}")


TRACED_SUFFIX = "-traced"  # ``run --trace``: the traced twin of placement NAME is NAME-traced


def traced_name(placement: str) -> str:
    return placement + TRACED_SUFFIX


@dataclass(frozen=True)
class RunConfig:
    profile: Profile
    topologies: tuple[Topology, ...]
    launch: LaunchSettings
    cpus: CpuPlan
    experiments: tuple[str, ...] = ()  # in their order within a trial (build: the default run)
    settings: Mapping[str, Any] = field(default_factory=dict)  # experiment -> its settings
    seed: int = 1
    arrival: str = "poisson"
    generator_processes: int = 1
    # > 0: each step's load from Locust's master and this many workers (bench/load/distributed.py)
    generators: int = 0
    # Paired ratios asked for besides each placement over the first: (numerator, denominator),
    # e.g. ("microservices-pg", "microservices") prices the database seam alone.
    comparisons: tuple[tuple[str, str], ...] = ()
    # placement -> the shop's code it runs, when not this checkout's (``--baseline-ref``)
    sources: Mapping[str, ShopSource] = field(default_factory=dict)
    # placement -> the deployment it measures, for a placement it does not start (its
    # topology, named after it, is among ``topologies``: bench/system/deployed.py)
    targets: Mapping[str, Target] = field(default_factory=dict)
    # placement -> how its servers trace (``--trace``: the twin NAME-traced of each placement)
    traced: Mapping[str, TraceExport] = field(default_factory=dict)

    @classmethod
    def build(cls, profile: str, topologies: Sequence[Topology], launch: LaunchSettings,
              cpus: CpuPlan, experiments: Sequence[str] | None = None, trials: int | None = None,
              overrides: Mapping[str, Mapping[str, Any]] | None = None, **kw: Any) -> "RunConfig":
        """A config with each experiment's settings for ``profile`` (``overrides``: per
        experiment, fields to replace). KeyError for an unknown experiment or profile,
        SettingError (a ValueError naming the setting) for an override out of its range."""
        chosen = PROFILES[profile] if trials is None else replace(PROFILES[profile], trials=trials)
        experiments = tuple(experiments) if experiments else default_run()
        if kw.get("targets"):
            for name in experiments:
                unable_against_targets(name)
        # every override checked in one place (bench/experiments/limits.py): SettingError
        settings = {name: settings_with(name, get(name).settings(profile),
                                        (overrides or {}).get(name)) for name in experiments}
        return cls(chosen, tuple(topologies), launch, cpus, tuple(experiments), settings, **kw)

    def trials(self, experiment: str | None = None) -> int:
        """How many trials ``experiment`` makes (None: the most any experiment makes)."""
        if experiment is None:
            return max([self.trials(name) for name in self.experiments] or [self.profile.trials])
        return get(experiment).trials(self.settings[experiment], self.profile.trials)

    def launch_of(self, placement: str) -> LaunchSettings:
        """How ``placement`` is started: the run's launch, pinned to the system's CPUs; from
        its source when it runs another ref's code, and then without the injected hop delay
        (a fault of the build under test, not of its baseline)."""
        launch = replace(self.launch, cpus=self.cpus.system, trace=self.traced.get(placement))
        source = self.sources.get(placement)
        if source is None:
            return launch
        return replace(launch, source=source, hop=replace(launch.hop, added_latency_ms=0.0))

    def variants(self) -> dict[str, dict[str, tuple[Topology, LaunchSettings]]]:
        """experiment -> placement -> the (topology, launch) it measures there, where that
        differs from the run's (``Experiment.placement``)."""
        out: dict[str, dict[str, tuple[Topology, LaunchSettings]]] = {}
        for name in self.experiments:
            for topology in self.topologies:
                if topology.name in self.targets:  # measured as deployed, never another shape
                    continue
                launch = self.launch_of(topology.name)
                chosen = get(name).placement(self.settings[name], topology, launch)
                if chosen != (topology, launch):
                    out.setdefault(name, {})[topology.name] = chosen
        return out

    def describe(self) -> dict[str, Any]:
        """The full configuration as plain data, for the manifest (``from_manifest`` reads
        it back). ``variants`` is derived, recorded for the reader of the manifest."""
        variants = {exp: {p: {"topology": encode(t), "launch": encode(l)} for p, (t, l) in by.items()}
                    for exp, by in self.variants().items()}
        return {"profile": encode(self.profile), "topologies": [encode(t) for t in self.topologies],
                "variants": variants,
                "launch": encode(self.launch), "cpus": encode(self.cpus), "seed": self.seed,
                "arrival": self.arrival, "generator_processes": self.generator_processes,
                "generators": self.generators,
                "comparisons": [list(pair) for pair in self.comparisons],
                "sources": {name: encode(s) for name, s in self.sources.items()},
                "targets": {name: t.describe() for name, t in self.targets.items()},
                "traced": {name: encode(t) for name, t in self.traced.items()},
                "experiments": {name: encode(s) for name, s in self.settings.items()}}

    @classmethod
    def from_manifest(cls, config: Mapping[str, Any]) -> "RunConfig":
        """The config a manifest's ``config`` describes (the inverse of ``describe``).
        Raises ValueError for a configuration that does not fit, KeyError for an experiment
        that is not installed."""
        profile = decode(Profile, config["profile"])
        settings = {name: get(name).recorded_settings(recorded, profile.name)
                    for name, recorded in config.get("experiments", {}).items()}
        topologies = tuple(Topology.from_dict(t) for t in config["topologies"])
        by_name = {t.name: t for t in topologies}
        targets = {name: Target(name, by_name[name], t["base_url"], dict(t["metrics"]),
                                t["credential_env"], t["ready_timeout_s"], t.get("credential_file"))
                   for name, t in config.get("targets", {}).items()}
        return cls(profile, topologies,
                   decode(LaunchSettings, config["launch"]), decode(CpuPlan, config["cpus"]),
                   tuple(settings), settings, int(config["seed"]), str(config["arrival"]),
                   int(config["generator_processes"]), int(config.get("generators", 0)),
                   tuple(tuple(pair) for pair in config.get("comparisons", ())),
                   {name: decode(ShopSource, s) for name, s in config.get("sources", {}).items()},
                   targets,
                   {name: decode(TraceExport, t) for name, t in config.get("traced", {}).items()})


def unable_against_targets(experiment: str) -> None:
    """Raise TargetError when ``experiment`` cannot measure a placement it did not start."""
    why = get(experiment).needs_own_processes
    if why:
        raise TargetError(f"experiment {experiment!r} is not available against a target: {why}")


@dataclass(frozen=True)
class PlannedStep:
    experiment: str
    rung: Rung
    placement: str
    trial: int
    seed: int  # the same for every placement of one (experiment, rung, trial): same arrivals
    again: int | None = None  # the trial this step measures again (its first try was spoiled)


def plan_steps(config: RunConfig) -> list[PlannedStep]:
    """Every step in the order it runs: trial by trial; within a trial, each experiment's
    rungs, each rung in every placement back to back, in an order drawn at random (from the
    run's seed) for every rung of every trial: randomized multiple interleaved trials, so no
    placement is always first or always after the same one (Abedi and Brecht, ICPE 2017)."""
    rungs = [(name, rung) for name in config.experiments
             for rung in get(name).rungs(config.settings[name])]
    steps = []
    for trial in range(config.trials()):
        for experiment, rung in rungs:
            if trial < min(config.trials(experiment), rung.trials or config.trials()):
                steps.extend(_group(config, experiment, rung, trial))
    return steps


def _group(config: RunConfig, experiment: str, rung: Rung, trial: int,
           again: int | None = None) -> list[PlannedStep]:
    """One rung of one trial in every placement, in a random order; ``again``: the trial it
    measures again (its arrivals are new, drawn from its own seed)."""
    tag = f"{config.seed}/{experiment}/{rung.label}/{trial}" + ("" if again is None else "/again")
    seed = zlib.crc32(tag.encode())
    names = [t.name for t in config.topologies]
    random.Random(seed).shuffle(names)
    return [PlannedStep(experiment, rung, name, trial, seed, again) for name in names]


class Harness:
    """Runs a config's steps into a store. Raises LaunchError on a dead process."""

    def __init__(self, config: RunConfig, store: RunStore, progress: Progress | None = None) -> None:
        self.config = config
        self.store = store
        self.progress = progress or Progress()
        self.started = time.monotonic()

    def run(self) -> None:
        """Measure every planned step into the store, in ``plan_steps`` order. Starts each
        experiment's helpers, then each placement (and any other shape of it an experiment
        asks for) once, then runs the steps; every process started is stopped on exit,
        whatever ends it. Raises LaunchError when a process of the system died, LoadError
        when the generator could not run, KeyboardInterrupt on a stop signal."""
        config = self.config
        settings = replace(config.launch, cpus=config.cpus.system)
        steps = plan_steps(config)
        experiments = [get(name) for name in config.experiments]
        for name in config.experiments if config.targets else ():
            unable_against_targets(name)
        with ExitStack() as stack, pinned(config.cpus.generator):
            session = RunSession(self.store, settings, config.cpus.system, config.cpus.generator,
                                 {}, stack, self.progress, config.seed, config.arrival)
            for exp in experiments:
                exp.start(session, config.settings[exp.name])
            variants = config.variants()
            started: list[tuple[tuple[Topology, LaunchSettings], Any]] = []

            def shop_for(chosen: tuple[Topology, LaunchSettings], why: str) -> Any:
                """The shop started for (topology, launch), started now if it is not yet."""
                for key, shop in started:
                    if key == chosen:
                        return shop
                self.progress.on_phase(f"starting {chosen[0].name}{why}")
                shop = stack.enter_context(launch(*chosen))
                started.append((chosen, shop))
                return shop

            for topology in config.topologies:
                target = config.targets.get(topology.name)
                if target is not None:
                    self.progress.on_phase(f"connecting to {topology.name} at {target.base_url}")
                    deployed = stack.enter_context(connect(target))
                    session.shops[topology.name] = deployed
                    self.store.manifest.setdefault("targets", {})[topology.name] = deployed.fingerprint
                for exp in experiments:
                    variant = variants.get(exp.name, {}).get(topology.name)
                    if target is not None:  # connected above, as it is deployed
                        pass
                    elif variant is None:
                        session.shops[topology.name] = shop_for(
                            (topology, config.launch_of(topology.name)), "")
                    else:  # the run's own shape is started only if some experiment measures it
                        session.variants[(exp.name, topology.name)] = shop_for(
                            variant, f" as {exp.name} measures it")
                    exp.prepare(session, config.settings[exp.name], topology.name)
            spoiled: list[PlannedStep] = []
            for i, step in enumerate(steps):
                if i == 0 or steps[i - 1].trial != step.trial:
                    self.progress.on_phase(f"trial {step.trial + 1}")
                    for exp in experiments:  # those that measure in this trial
                        if step.trial < config.trials(exp.name):
                            exp.before_trial(session, config.settings[exp.name], step.trial)
                result = self._run_step(session, step, i + 1, len(steps))
                if result.spoiled and not any(s.experiment == step.experiment and
                                              s.rung == step.rung and s.trial == step.trial
                                              for s in spoiled):
                    spoiled.append(step)
            self._again(session, spoiled, len(steps))

    def _again(self, session: RunSession, spoiled: list["PlannedStep"], done: int) -> None:
        """Measure once more, at the end, every rung of a trial in which the harness spoiled
        a step (late sends, a busy generator): in every placement, as a trial of its own
        numbered after the run's, since the pair stands or falls together."""
        config = self.config
        groups = [_group(config, s.experiment, s.rung, config.trials() + j, again=s.trial)
                  for j, s in enumerate(spoiled)]
        total = done + sum(len(g) for g in groups)
        limit = config.profile.again_within_s
        for index, group in enumerate(groups):
            if limit is not None and time.monotonic() - self.started > limit:
                log.warning("not measured again (the profile's %g s are up): %s",
                            limit, ", ".join(f"{g[0].experiment} {g[0].rung.label} trial "
                                             f"{g[0].again + 1}" for g in groups[index:]))
                break
            self.progress.on_phase(f"measuring again: {group[0].experiment} "
                                   f"{group[0].rung.label}, trial {group[0].again + 1}")
            exp = get(group[0].experiment)
            exp.before_trial(session, config.settings[exp.name], group[0].trial)
            for step in group:
                done += 1
                self._run_step(session, step, done, total)

    def _run_step(self, session: RunSession, step: "PlannedStep", done: int,
                  total: int) -> StepResult:
        """Measure ``step`` into the store; ``done`` of ``total`` steps, for the progress."""
        if stop_requested.is_set():  # a stop whose KeyboardInterrupt was swallowed
            raise KeyboardInterrupt
        result = self._step(session, get(step.experiment), step)
        self.store.flush()
        self.progress.on_step(done, total, result.key.slug)
        return result

    def _step(self, session: RunSession, exp: Experiment, planned: PlannedStep) -> StepResult:
        config = self.config
        settings = config.settings[exp.name]
        key = step_key(exp, planned.placement, planned.rung, planned.trial)
        load = exp.load(session, settings, planned.rung, planned.placement)
        shop = session.shop(exp, planned.placement)
        plan = LoadPlan(rate_per_s=planned.rung.rate, duration_s=load.duration_s,
                        warmup_s=load.warmup_s, output_dir=str(self.store.raw_dir(key.slug)),
                        arrival=load.arrival, seed=planned.seed, options=load.options,
                        reference=tuple(load.reference))
        deployed = isinstance(shop, DeployedShop)
        # a deployment's processes are not ours to read: their /metrics say what they used
        watch = {} if deployed else {"system": [p.pid for p in shop.processes.values()]
                                     + self._database_pids(shop, config.cpus.system)}
        # two readings at least inside the window, at most one every 2 s (each costs the server)
        scraper = (MetricsSampler(shop.metrics_urls(), period_s=min(2.0, load.duration_s / 4))
                   if deployed else None)
        before = self._counts(shop)
        with exp.during(session, settings, key), scraper or nullcontext():
            result = run_load(load.scenario, shop.base_url, plan, config.generator_processes,
                              config.cpus.generator, watch, config.generators)
        if scraper is not None:
            result.samples.extend(scraper.window_samples(result.measure_start_s,
                                                         result.measure_end_s))
            result.invalid_reasons.extend(unread_servers(scraper, result))
        after = self._counts(shop) if before is not None else None
        dead = shop.dead()
        if dead:
            raise LaunchError(f"during {key.slug}, {dead[0].exit_report()}")
        step = step_result(key, planned.seed, result, exp.max_lateness_p99_us)
        if planned.again is not None:
            step.extra["measures_again"] = planned.again
        exp.after_step(session, settings, step, result)
        self.store.add_rows(RESOURCES, ({**asdict(key), **asdict(s)} for s in result.samples))
        if before is not None and after is not None:
            self.store.add_rows(CALLS, ({"slug": key.slug, **asdict(key), **row}
                                        for row in count_rows(before, after)))
        self.store.add_step(step)
        return step


    @staticmethod
    def _counts(shop) -> dict | None:
        """Every server's /metrics counts, read outside the measured window; None (and no
        calls.csv rows for the step) if a server does not answer: the load decides validity."""
        try:
            return shop_counts(shop)
        except ShopQueryError as exc:
            log.warning("could not read the shop's counts: %s", exc)
            return None

    @staticmethod
    def _database_pids(shop, cpus: tuple[int, ...] | None) -> list[int]:
        """A PostgreSQL placement's server processes: their CPU and memory are the database's
        part of the system's cost, so they are measured with it, and pinned to the system's
        CPUs like the shop's own processes (only the backends of this run's own databases;
        the server's shared processes are left alone and not counted)."""
        pids = shop.database_pids()
        for pid in pids if cpus else ():
            try:
                os.sched_setaffinity(pid, cpus)
            except OSError:  # gone, or not ours to move: measured where it runs
                pass
        return pids


def unread_servers(scraper: MetricsSampler, result: LoadResult) -> list[Invalid]:
    """The step's resources were not measured when a server's /metrics was not read at least
    twice inside the measured window (its CPU would be a guess)."""
    unread = scraper.unread(result.measure_start_s, result.measure_end_s)
    if not unread:
        return []
    why = f" ({scraper.errors[-1]})" if scraper.errors else ""
    return [Invalid(RESOURCES_UNREAD, f"CPU and memory not measured: /metrics of "
                    f"{', '.join(unread)} not read twice inside the window{why}")]


def step_result(key: StepKey, seed: int, result: LoadResult,
                max_lateness_p99_us: int) -> StepResult:
    """A measured step's counts, resources and validity. Validity adds one rule to the
    generator's own (``bench.load.generator.validity_problems``): a run holds its sends to
    ``max_lateness_p99_us`` (the experiment's), the same for every placement, since every
    late send adds its lateness to a latency."""
    usage = window_usage(result.samples, "system", result.measure_start_s, result.measure_end_s)
    shop_names = [n for n in result.names if n not in result.plan.reference]
    served = sum(result.names[n].completed for n in shop_names)
    latency_p99 = result.latency(shop_names).get_value_at_percentile(99) if shop_names else 0
    lateness_p99 = result.lateness.get_value_at_percentile(99)
    reasons = list(result.invalid_reasons)
    # each worker of a distributed run is held to the experiment's limit on its own: a late
    # slice is late sends however few of the merged sends it holds
    reasons += [r for r in worker_problems(result.workers, max_lateness_p99_us)
                if r not in reasons]
    stolen_ms = round(1000 * (result.steal_s or {}).get("generator", 0.0))
    if lateness_p99 > max_lateness_p99_us and not any(r.code == LATE_SENDS for r in reasons):
        reasons.append(Invalid(LATE_SENDS, f"sends were late: p99 {lateness_p99:,} us after "
                               f"their intended time (the run's limit: {max_lateness_p99_us:,} us)"
                               + (f", while the hypervisor took {stolen_ms:,} ms of the "
                                  f"generator's CPU (steal time)" if stolen_ms else "")))
    pss = getattr(usage, "pss_bytes_max", None)
    return StepResult(
        key, rate=result.plan.rate_per_s, seed=seed, scheduled=result.scheduled,
        completed=result.completed, completed_in_time=result.completed_in_time,
        errors=result.errors, dropped=result.dropped, unfinished=result.unfinished,
        censored=result.censored,
        served=served, duration_s=round(result.duration_s, 3),
        system_cpu_s=round(usage.cpu_s, 6),
        system_pss_mib=None if pss is None else round(pss / 2**20, 2),
        system_rss_mib=round(usage.rss_bytes_max / 2**20, 2),
        generator_cpu=round(max(result.generator_cpu, default=0.0), 3),
        lateness_p99_us=int(lateness_p99), latency_p99_us=int(latency_p99),
        invalid_reasons=reasons,
        extra={f"steal_{where}_ms": round(1000 * s) for where, s in (result.steal_s or {}).items()})


@dataclass
class Outcome:
    run_dir: Path
    complete: bool
    reason: str
    summary: Any  # bench.results.model.RunSummary, or None when the report failed
    exit_code: int
    report_error: str = ""


def execute(config: RunConfig, results_root: Path, progress: Progress | None = None,
            run_id: str | None = None) -> Outcome:
    """The whole run: measure into ``results_root``/<run-id>/, then summarise and report.

    Any failure or interruption (KeyboardInterrupt) keeps what was measured, marked
    incomplete; every process the run started is stopped first. The exit code is
    EXIT_INTERRUPTED, EXIT_FAILED, EXIT_VIOLATION (an experiment found the system wrong),
    EXIT_NOTHING_VALID (a headline rests on no valid step) or EXIT_OK."""
    from bench.render.report import build_report  # the report pulls in matplotlib: only when needed

    store = RunStore(results_root, run_id)
    store.start({"command": "run", "config": config.describe(), "environment": fingerprint(),
                 "cpu_note": config.cpus.note})
    complete, reason = False, ""
    try:
        Harness(config, store, progress).run()
        complete = True
    except KeyboardInterrupt:
        reason = "interrupted"
    except (LaunchError, LoadError, TargetError) as exc:
        reason = str(exc).splitlines()[0]
    except Exception as exc:  # keep what was measured; the logs are in the run directory
        reason = f"{type(exc).__name__}: {exc}"
    with signals_held():
        store.finish(complete, reason)
        try:
            summary = build_report(store.dir)
        except Exception as exc:  # the raw results are written; the report can be rebuilt
            return Outcome(store.dir, complete, reason, None, EXIT_FAILED,
                           f"{type(exc).__name__}: {exc}")
    if not complete:
        code = EXIT_INTERRUPTED if reason == "interrupted" else EXIT_FAILED
    else:
        code = summary.exit_code
    return Outcome(store.dir, complete, reason, summary, code)
