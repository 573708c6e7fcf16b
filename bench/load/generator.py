"""Run open-loop load: Locust, headless, as subprocesses; merge what they recorded.

Locust is never imported here (it monkey-patches the process with gevent): each generator
process is ``python -m locust -f <the scenario's file>`` reading its ``LoadPlan``. A scenario
is named by the module of its locustfile (``TARGET``, or an experiment's own ``scenario``
module), so an experiment brings its scenario with it and this module lists none.
Each writes its histograms; this module adds them up (never averaging percentiles), checks
the run, and watches the generators' CPU. A run is *invalid*, with the reasons said, when
the rate of requests completed in time misses the scheduled rate by more than 2% (the
generator or the target fell behind), more than 1% of the scheduled requests failed or
never got an answer (errors plus censored values: dropped, or unfinished when the drain
ended), a generator used more than 85% of a core or sent late (p99 over 10 ms), a value fell
outside the histograms' range, or a generator failed.

With ``generators``, the run is on Locust's own master/worker mode instead
(``bench.load.distributed``): each worker sends a slice of the one schedule, sends its
results to the master, which writes them here, and is judged on its own for lateness and
CPU; a worker lost mid-run makes the run invalid, named.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.load.distributed import (MASTER_PORT_FILE, Distributed, master_command, master_port,
                                    worker_command, worker_name)
from bench.load.plan import PLAN_ENV, LoadPlan, deal, split
from bench.results import hdr
from bench.results.model import (ERRORS, GENERATOR_BUSY, GENERATOR_FAILED, LATE_SENDS, NOT_STEADY,
                                 OUT_OF_RANGE, QUANTILES, RATE_MISSED, UNMATCHED, Invalid, Quantile)
from bench.system.processes import child_env, signals_held, spawn_group, stop_groups
from bench.system.sampler import ResourceSampler, Sample, steal_s, window_usage

TARGET = "bench.load.target"  # the generic scenario: one method and path at a given rate
MAX_RATE_MISS = 0.02
MAX_ERROR_RATE = 0.01  # (errors + censored) / scheduled, over the measured window
MAX_GENERATOR_CPU = 0.85
MAX_LATENESS_P99_US = 10_000  # sends later than this (p99) mean the generator fell behind
# The generator's processes run at this niceness where permitted, so that a machine's own
# servers (databases, brokers: not pinned, and moved to the generator's CPU when the system's
# is busy) do not take its CPU at equal weight when a send is due. What still makes sends
# late is mostly the hypervisor's steal, recorded per step (docs/methodology.md, "What still
# makes sends late"); real-time priority was tried and made it worse.
GENERATOR_NICENESS = -10
# A step is not steady when the median latency of the window's second half (by intended send
# time) exceeds the first half's by this factor and by at least STEADY_SLACK_US: a server
# overloaded by 1% builds a queue that adds ~10 ms a second to every latency, past both in
# a 2 s window; a steady one at 60% of a core moved its halves' medians by up to 1.5x and
# 3 ms in 1 s halves (seen here), which 1.5x and 2 ms called a queue.
STEADY_GROWTH = 2.0
STEADY_SLACK_US = 10_000
SETUP_ALLOWANCE_S = 120.0  # a scenario's untimed set-up (logins) must fit in this
MASTER_GROUP = "generator-master"  # a distributed run's Locust master, as the sampler names it
MASTER_LOG = "locust-master.log"


class LoadError(RuntimeError):
    """The generator could not run (not: the target was slow or failed requests)."""


@dataclass
class NameResult:
    """One request name, merged over generator processes. Histograms in µs.

    ``latency`` holds every scheduled request of the measured window: the completed ones
    (``ok`` + ``errors``) measured, and ``censored`` ones (``dropped`` + ``unfinished``) as
    lower bounds (drain end minus intended send time)."""

    latency: HdrHistogram  # from the intended send time
    ok: int = 0
    errors: int = 0
    dropped: int = 0  # never sent: the in-flight limit was reached
    unfinished: int = 0  # sent, unanswered when the drain ended
    censored: int = 0  # dropped + unfinished: values in ``latency`` that are lower bounds
    out_of_range: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        return self.ok + self.errors


@dataclass
class WorkerReport:
    """What one worker of a distributed run said of itself (it may be on another machine)."""

    index: int  # its slice of the schedule
    host: str
    pid: int
    lateness: HdrHistogram  # actual send - intended send, µs
    cpu: float | None  # cores' worth over the measured window, measured by the worker

    @property
    def name(self) -> str:
        return worker_name({"index": self.index, "host": self.host, "pid": self.pid})


@dataclass
class LoadResult:
    scenario: str
    target: str
    plan: LoadPlan
    processes: int
    names: dict[str, NameResult]
    lateness: HdrHistogram  # actual send - intended send, µs
    scheduled: int
    sent: int
    unfinished: int
    completed_in_time: int  # finished by the schedule's end plus a 0.5 s grace
    measure_start_s: float  # epoch seconds: the measured window
    measure_end_s: float
    generator_cpu: list[float]  # per process, cores' worth over the measured window
    timeseries: list[dict[str, Any]]
    samples: list[Sample]
    interval_logs: list[Path]
    invalid_reasons: list[Invalid] = field(default_factory=list)
    unmatched: int = 0  # completions that matched no request in flight (a harness bug)
    # the system's latencies (µs) by the half of the window their send was intended in
    halves: tuple[HdrHistogram, HdrHistogram] | None = None
    # CPU seconds the hypervisor took (steal) from the generator's CPUs and from the others,
    # from the generators' start to their end (None: not measured)
    steal_s: dict[str, float] | None = None
    # a distributed run's workers, each judged on its own (empty: generator processes)
    workers: list[WorkerReport] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.invalid_reasons

    @property
    def completed(self) -> int:
        return sum(n.completed for n in self.names.values())

    @property
    def errors(self) -> int:
        return sum(n.errors for n in self.names.values())

    @property
    def dropped(self) -> int:
        return sum(n.dropped for n in self.names.values())

    @property
    def censored(self) -> int:
        """Scheduled requests of the window that never got an answer (dropped, or unfinished
        when the drain ended): in the latency histograms as lower bounds."""
        return sum(n.censored for n in self.names.values())

    @property
    def error_rate(self) -> float:
        """(errors + censored) / scheduled over the measured window; 0 if nothing scheduled."""
        return (self.errors + self.censored) / self.scheduled if self.scheduled else 0.0

    @property
    def duration_s(self) -> float:
        return self.measure_end_s - self.measure_start_s

    @property
    def achieved_rate(self) -> float:
        """Requests of the window completed by its end (plus 0.5 s), per second: below the
        scheduled rate when either the generator or the target could not keep up."""
        return self.completed_in_time / self.duration_s

    @property
    def scheduled_rate(self) -> float:
        return self.scheduled / self.duration_s

    def latency(self, names: Sequence[str] | None = None) -> HdrHistogram:
        """All (or the named) requests' latency histograms, added."""
        return hdr.merge(r.latency for n, r in self.names.items() if names is None or n in names)


def scenario_file(scenario: str) -> Path:
    """The locustfile of ``scenario``, a module name (found without importing the module
    itself: Locust must be the first to import it, in the generator process)."""
    try:
        spec = importlib.util.find_spec(scenario)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise LoadError(f"unknown scenario {scenario!r}: no module of that name")
    return Path(spec.origin)


def run_load(scenario: str, host: str, plan: LoadPlan, processes: int = 1,
             cpus: tuple[int, ...] | None = None,
             watch: Mapping[str, Sequence[int]] | None = None,
             generators: int | Distributed = 0) -> LoadResult:
    """Drive ``host`` with ``scenario`` following ``plan`` split over ``processes`` Locust
    processes pinned to ``cpus``. ``watch`` names more process groups (root pids) to sample
    alongside the generators (``generator-N`` are taken). Blocks until the run ends; on any
    exit (including KeyboardInterrupt) every generator process is stopped.

    ``generators``: instead, Locust's master and this many workers (or as a ``Distributed``
    lays them out, some on other machines), each sending its slice of the one schedule
    (``bench.load.plan.deal``); not with ``processes`` > 1. Raises LoadError when the
    generators could not run, ValueError for both."""
    layout = Distributed(generators) if isinstance(generators, int) and generators else generators
    if layout and processes != 1:
        raise ValueError("give generator processes or distributed generators, not both")
    out = Path(plan.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = deal(plan, layout.workers) if layout else split(plan, processes)
    for p in plans:
        p.result_path().unlink(missing_ok=True)
    popens: list[subprocess.Popen] = []
    sampler = None
    mine = set(cpus) if cpus else set(range(os.cpu_count() or 1))
    others = set(range(os.cpu_count() or 1)) - mine
    stolen = (steal_s(mine), steal_s(others))
    try:
        if layout:
            groups = _start_distributed(scenario, host, plan, layout, cpus, popens)
            waited = [groups[MASTER_GROUP]]  # the workers end when it does
        else:
            groups = _start_processes(scenario, host, plans, cpus, popens)
            waited = list(groups.values())
        # the sampler reads /proc: never on the generators' CPUs while they send
        away = set(range(os.cpu_count() or 1)) - set(cpus) if cpus else None
        sampler = ResourceSampler({**{name: [popen.pid] for name, popen in groups.items()},
                                   **(watch or {})}, cpus=away or None).start()
        timeout = (plan.total_s + plan.drain_timeout_s + SETUP_ALLOWANCE_S + 30
                   + (layout.connect_timeout_s if layout else 0))
        for popen in waited:
            try:
                popen.wait(timeout)
            except Exception:
                raise LoadError(f"generator {popen.pid} did not finish within {timeout:.0f}s") from None
    finally:
        with signals_held():  # a second Ctrl-C must not leave generators behind
            samples = sampler.stop() if sampler else []
            stop_groups(popens, timeout_s=5)
    if layout and not all(p.result_path().exists() for p in plans):
        # a local worker that could not start says why in its own log (they are otherwise empty)
        workers = "".join(f"\nend of {log.name}:\n{_log_tail(log)}"
                          for log in sorted(out.glob("locust-worker-*.log")) if log.stat().st_size)
        raise LoadError(f"the Locust master wrote no result for every worker; end of its log:\n"
                        f"{_log_tail(out / MASTER_LOG)}{workers}")
    result = collect(scenario, host, plan, plans, samples)
    result.steal_s = {"generator": round(steal_s(mine) - stolen[0], 3),
                      "system": round(steal_s(others) - stolen[1], 3)}
    return result


def _spawn(cmd: list[str], log: Path, env: dict[str, str], cpus: tuple[int, ...] | None,
           popens: list[subprocess.Popen]) -> subprocess.Popen:
    """A generator process, recorded in ``popens`` (so it is stopped whatever happens next)."""
    with signals_held():  # a stop between spawning and recording would orphan it
        popen = spawn_group(cmd, log, env, cpus, niceness=GENERATOR_NICENESS,
                            # a busy Locust never runs its SIGTERM handler
                            death_signal=signal.SIGKILL)
        popens.append(popen)
    return popen


def _start_processes(scenario: str, host: str, plans: list[LoadPlan],
                     cpus: tuple[int, ...] | None, popens: list[subprocess.Popen]
                     ) -> dict[str, subprocess.Popen]:
    """One headless Locust process per plan; by sampler group."""
    groups = {}
    for p in plans:
        plan_path = Path(p.output_dir) / f"plan-{p.process_index}.json"
        plan_path.write_text(p.to_json())
        groups[generator_group(p.process_index)] = _spawn(
            _locust_command(scenario, host, p), Path(p.output_dir) / f"locust-{p.process_index}.log",
            child_env(**{PLAN_ENV: str(plan_path)}), cpus, popens)
    return groups


def _start_distributed(scenario: str, host: str, plan: LoadPlan, layout: Distributed,
                       cpus: tuple[int, ...] | None, popens: list[subprocess.Popen]
                       ) -> dict[str, subprocess.Popen]:
    """Locust's master, then, once it listens, the local workers; by sampler group (the
    workers' groups numbered in the order started, not by their slices)."""
    out = Path(plan.output_dir)
    plan_path = out / "plan.json"
    plan_path.write_text(plan.to_json())
    (out / MASTER_PORT_FILE).unlink(missing_ok=True)
    locustfile = scenario_file(scenario)
    master = _spawn(master_command(locustfile, host, layout, _common_options(plan)),
                    out / MASTER_LOG, child_env(**{PLAN_ENV: str(plan_path)}), cpus, popens)
    port = master_port(out, master, timeout_s=30)
    if port is None:
        raise LoadError(f"the Locust master did not start; end of its log:\n{_log_tail(out / MASTER_LOG)}")
    # the local workers reach the master on loopback unless it listens on one address only
    address = "127.0.0.1" if layout.bind_host in ("*", "0.0.0.0", "::") else layout.bind_host
    groups = {MASTER_GROUP: master}
    for k in range(layout.local):
        groups[generator_group(k)] = _spawn(worker_command(address, port, str(locustfile)),
                                            out / f"locust-worker-{k}.log", child_env(), cpus, popens)
    return groups


def _common_options(plan: LoadPlan) -> list[str]:
    """What every generator process that runs a schedule is told, besides its role."""
    run_time = int(plan.total_s + plan.drain_timeout_s + SETUP_ALLOWANCE_S)
    # the user (or a distributed run's master) quits the runner once its results are
    # written: nothing to wait for
    return ["--run-time", f"{run_time}s", "--stop-timeout", "0", "--loglevel", "WARNING",
            "--only-summary", "--exit-code-on-error", "0"]


def _locust_command(scenario: str, host: str, plan: LoadPlan) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(scenario_file(scenario)), "--headless",
            "--users", "1", "--spawn-rate", "1", "--host", host, *_common_options(plan)]


def _log_tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def collect(scenario: str, host: str, plan: LoadPlan, plans: list[LoadPlan],
            samples: list[Sample]) -> LoadResult:
    """Merge the generator processes' result files into one ``LoadResult``."""
    docs = []
    for p in plans:
        path = p.result_path()
        if not path.exists():
            tail = _log_tail(Path(p.output_dir) / f"locust-{p.process_index}.log")
            raise LoadError(f"generator {p.process_index} wrote no result; end of its log:\n{tail}")
        docs.append(_read_json(path))
    reasons = [Invalid(GENERATOR_FAILED, f"{worker_name(d['worker']) if 'worker' in d else f'generator {i}'}"
                                         f" did not complete ({d.get('error') or 'no reason given'})")
               for i, d in enumerate(docs) if not d.get("complete")]
    names: dict[str, NameResult] = {}
    for doc in docs:
        for name, n in doc.get("names", {}).items():
            merged = names.setdefault(name, NameResult(hdr.new_histogram()))
            merged.latency.add(hdr.decode(n["latency_histogram"]))
            merged.ok += n["ok"]
            merged.errors += n["errors"]
            merged.dropped += n["dropped"]
            merged.unfinished += n.get("unfinished", 0)
            merged.censored += n.get("censored", 0)
            merged.out_of_range += n["out_of_range"]
            for status, count in n["statuses"].items():
                merged.statuses[status] = merged.statuses.get(status, 0) + count
    lateness = hdr.merge(hdr.decode(d["lateness_histogram"]) for d in docs if "lateness_histogram" in d)
    starts = [d["start_epoch_s"] for d in docs if "start_epoch_s" in d]
    start = (min(starts) if starts else 0.0) + plan.warmup_s
    end = start + plan.duration_s
    # a worker measures its own CPU (it may be on another machine); processes are sampled
    workers = [WorkerReport(d["worker"]["index"], d["worker"]["host"], d["worker"]["pid"],
                            hdr.decode(d["lateness_histogram"]), d.get("generator_cpu"))
               for d in docs if "worker" in d and "lateness_histogram" in d]
    generator_cpu = ([w.cpu or 0.0 for w in workers] if workers else
                     [window_usage(samples, generator_group(p.process_index), start, end).cpu_utilisation
                      for p in plans])
    result = LoadResult(
        scenario=scenario, target=host, plan=plan, processes=len(plans), names=names,
        lateness=lateness, scheduled=sum(d.get("scheduled", 0) for d in docs),
        sent=sum(d.get("sent", 0) for d in docs), unfinished=sum(d.get("unfinished", 0) for d in docs),
        completed_in_time=sum(d.get("completed_in_time", 0) for d in docs),
        measure_start_s=start, measure_end_s=end, generator_cpu=generator_cpu,
        timeseries=[dict(row, generator=i) for i, d in enumerate(docs) for row in d.get("timeseries", [])],
        samples=samples, interval_logs=[p.interval_log_path() for p in plans],
        invalid_reasons=reasons, unmatched=sum(d.get("unmatched", 0) for d in docs),
        halves=(tuple(hdr.merge(hdr.decode(d["halves"][i]) for d in docs) for i in (0, 1))
                if all("halves" in d for d in docs) else None),
        workers=workers)
    result.invalid_reasons.extend(validity_problems(result))
    return result


def validity_problems(result: LoadResult) -> list[Invalid]:
    """Why the run cannot be trusted as a measurement of the target, if it cannot."""
    problems = []
    if result.scheduled and result.completed_in_time < result.scheduled * (1 - MAX_RATE_MISS):
        problems.append(Invalid(RATE_MISSED, f"achieved {result.achieved_rate:.1f} req/s, more than "
                        f"{MAX_RATE_MISS:.0%} below the scheduled {result.scheduled_rate:.1f} req/s "
                        f"({result.dropped} dropped, {result.unfinished} unfinished, "
                        f"{result.completed - result.completed_in_time} finished late)"))
    if result.error_rate > MAX_ERROR_RATE:
        unfinished = sum(n.unfinished for n in result.names.values())
        problems.append(Invalid(ERRORS, f"error rate {result.error_rate:.1%} above the {MAX_ERROR_RATE:.0%} limit: "
                        f"{result.errors} errors and {result.censored} censored "
                        f"({result.dropped} dropped, {unfinished} unfinished at the drain's end) "
                        f"of {result.scheduled} scheduled"))
    if result.unmatched:
        problems.append(Invalid(UNMATCHED, f"{result.unmatched} completions matched no request in flight "
                        f"(a request's event name differs from its arrival's?)"))
    if result.workers:
        problems.extend(worker_problems(result.workers))
    else:
        lateness = result.lateness.get_value_at_percentile(99)
        if lateness > MAX_LATENESS_P99_US:
            problems.append(_late_sends("sends were late", lateness, MAX_LATENESS_P99_US))
        busiest = max(result.generator_cpu, default=0.0)
        if busiest > MAX_GENERATOR_CPU:
            problems.append(_busy("generator", busiest))
    growth = steadiness(result)
    if growth is not None:
        problems.append(Invalid(NOT_STEADY, growth))
    out_of_range = sum(n.out_of_range for n in result.names.values())
    if out_of_range:
        problems.append(Invalid(OUT_OF_RANGE, f"{out_of_range} latencies outside the histogram range "
                        f"({hdr.LOWEST_US} us .. {hdr.HIGHEST_US} us)"))
    return problems


def worker_problems(workers: Sequence[WorkerReport],
                    max_lateness_p99_us: int = MAX_LATENESS_P99_US) -> list[Invalid]:
    """Each worker of a distributed run judged on its own: one that sent late (p99 over
    ``max_lateness_p99_us``, µs) or used more than ``MAX_GENERATOR_CPU`` of a core spoils its
    slice, however small a share of the merged sends that slice is."""
    problems = []
    for w in workers:
        lateness = w.lateness.get_value_at_percentile(99)
        if lateness > max_lateness_p99_us:
            problems.append(_late_sends(f"{w.name} sent late", lateness, max_lateness_p99_us))
    problems.extend(_busy(w.name, w.cpu) for w in workers
                    if w.cpu is not None and w.cpu > MAX_GENERATOR_CPU)
    return problems


def _late_sends(what: str, p99_us: int, limit_us: int) -> Invalid:
    return Invalid(LATE_SENDS, f"{what}: p99 {p99_us} us after their intended time (limit {limit_us} us)")


def _busy(who: str, cpu: float) -> Invalid:
    return Invalid(GENERATOR_BUSY, f"{who} used {cpu:.0%} of a core (limit {MAX_GENERATOR_CPU:.0%}): "
                                   f"the generator, not the target, may set the latency")


def steadiness(result: LoadResult) -> str | None:
    """Why the window was not a steady state, or None: the median latency of its second half
    against its first (``STEADY_GROWTH``, ``STEADY_SLACK_US``). A queue growing through the
    window makes every latency in it a reading of how long the window was, not of the system."""
    if result.halves is None or min(h.get_total_count() for h in result.halves) < 20:
        return None
    first, second = (h.get_value_at_percentile(50) for h in result.halves)
    if second > STEADY_GROWTH * first and second - first >= STEADY_SLACK_US:
        return (f"not steady: the median latency rose from {first:,} us in the window's first "
                f"half to {second:,} us in its second (a queue building up)")
    return None


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def generator_group(index: int) -> str:
    """The sampler group of generator process ``index``."""
    return f"generator-{index}"


def summary_key(q: Quantile) -> str:
    """"p99.9" -> "p999_us": the key of a percentile in ``target_summary``."""
    return q.key.replace(".", "") + "_us"


def target_summary(result: LoadResult) -> dict[str, Any]:
    """What ``seambench load`` prints: all requests together, µs, and whether to trust it."""
    h = result.latency()
    return {"target": result.target, "scheduled": result.scheduled,
            "requests": result.completed, "errors": result.errors,
            "dropped": result.dropped, "censored": result.censored,
            "error_rate": round(result.error_rate, 4),
            "scheduled_rate": round(result.scheduled_rate, 2),
            "achieved_rate": round(result.achieved_rate, 2),
            **{summary_key(q): h.get_value_at_percentile(q.q) for q in QUANTILES},
            "max_us": h.get_max_value(),
            "send_lateness_p99_us": result.lateness.get_value_at_percentile(99),
            "generator_cpu": round(max(result.generator_cpu, default=0.0), 3),
            "generator_rss_max_mib": round(max(
                (window_usage(result.samples, generator_group(i), 0, float("inf")).rss_bytes_max
                 for i in range(result.processes)), default=0) / 2**20, 1),
            "valid": result.valid, "invalid_reasons": result.invalid_reasons,
            **({"workers": [{"index": w.index, "host": w.host, "pid": w.pid,
                             "send_lateness_p99_us": w.lateness.get_value_at_percentile(99),
                             "cpu": None if w.cpu is None else round(w.cpu, 3)}
                            for w in result.workers]} if result.workers else {})}
