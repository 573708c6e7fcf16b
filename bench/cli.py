"""The ``seambench`` command."""
from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import signal
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from bench import exitcodes
from bench import run as lifecycle
from bench.calibrate import CalibrationError
from bench.calibrate import calibrate as run_calibration
from bench.experiments import default_run
from bench.experiments import get as get_experiment
from bench.experiments import registered
from bench.experiments.limits import MAX_RATE, finite_range
from bench.load.distributed import MASTER_PORT, Distributed, run_worker
from bench.load.generator import (GENERATOR_NICENESS, TARGET, LoadError, run_load, summary_key,
                                  target_summary)
from bench.load.plan import LoadPlan
from bench.render.compare import compare, load_summary, render_markdown, render_text
from bench.render.console import RunConsole
from bench.render.report import REPORT_HTML, build_report
from bench.results.model import QUANTILES
from bench.results.store import MANIFEST, TRACES_DIR, new_run_id, read_json, write_text_atomic
from bench.system.deployed import Target, TargetError, load_target
from bench.system.edge import EDGES, EdgeError, resolve_edge
from bench.system.gitref import RefError, ShopSource, base_name, checked_out
from bench.system.launcher import LaunchError, LaunchSettings, launch
from bench.system.processes import child_env, stop_requested
from shop.hops import HopSettings
from shop.placement import Topology, TopologyError, check_installed, load_topology
from shop.search.service import SearchSettings
from shop.tracing import TraceExport


def topology_callback(ctx: click.Context, param: click.Parameter,
              value: str | tuple[str, ...]) -> Topology | list[Topology]:
    """Load ``--topology`` (one, or each of a repeated option, duplicates dropped)."""
    try:
        loaded = [load_topology(name) for name in dict.fromkeys(
            value if isinstance(value, tuple) else (value,))]
        for topology in loaded:
            check_installed(topology)
        return loaded if isinstance(value, tuple) else loaded[0]
    except TopologyError as exc:
        raise click.BadParameter(str(exc)) from None


def otlp_url_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An OTLP/HTTP endpoint: http(s)://HOST[:PORT]/PATH. Raises click.BadParameter."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not an http(s):// URL (e.g. "
                                 f"http://127.0.0.1:4318/v1/traces)")
    return value


def target_callback(ctx: click.Context, param: click.Parameter,
                    value: tuple[str, ...]) -> list[Target]:
    """Load each ``--target`` file (bench/system/deployed.py)."""
    try:
        return [load_target(path) for path in dict.fromkeys(value)]
    except TargetError as exc:
        raise click.BadParameter(str(exc)) from None


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    stop_requested.set()  # in case the exception lands in a finalizer and is swallowed
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP all stop what we started. SIGINT is set explicitly because
    a shell starts background jobs with it ignored, and Python then installs no handler."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)


def launch_settings(workers: int, threads: int, catalog_size: int, kdf_log2: int,
                    hop_delay_ms: float = 0.0, edge: str = "auto") -> LaunchSettings:
    """The launch the common options describe, with ``edge`` resolved on this machine (so a
    run records ``nginx`` or ``none``, never ``auto``). Raises click.BadParameter for
    ``--edge nginx`` without nginx."""
    try:
        resolved = resolve_edge(edge).kind
    except EdgeError as exc:
        raise click.BadParameter(str(exc), param_hint="--edge") from None
    return replace(LaunchSettings(), workers=workers, threads=threads, scrypt_n=2**kdf_log2,
                   search=replace(SearchSettings(), catalog_size=catalog_size),
                   hop=replace(HopSettings(), added_latency_ms=hop_delay_ms), edge=resolved)


common_options = [
    click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
                 help="gunicorn worker processes per process"),
    click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True,
                 help="gthread threads per worker"),
    click.option("--catalog-size", type=click.IntRange(10, 1_000_000), default=10_000,
                 show_default=True, help="products in the seeded catalog"),
    click.option("--kdf-log2", type=click.IntRange(1, 20), default=14, show_default=True,
                 help="scrypt cost: N = 2**this"),
    click.option("--hop-delay-ms", type=finite_range(0, 10_000), default=0.0,
                 show_default=True, help="fault injection: every HTTP hop between components "
                 "waits this long first (a slower hop, e.g. to see a budget breached)"),
    click.option("--edge", type=click.Choice(EDGES), default="auto", show_default=True,
                 help="what fronts the public process of every placement: nginx (a buffering "
                 "reverse proxy, so slow clients cannot hold gunicorn's threads), none, or "
                 "auto (nginx when installed)"),
]


def with_common_options(fn):
    for option in reversed(common_options):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog=exitcodes.help_text())
@click.version_option(package_name="seambench", prog_name="seambench")
def cli() -> None:
    """seambench: what does a seam cost? One shop, measured as a monolith and as microservices."""


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # what `load` sends
COMMANDS_GROUP = "seambench.commands"  # entry points: commands a plug-in adds


@functools.cache
def _plug_in() -> None:
    """Add what installed experiments bring: their options to ``run`` and their commands
    (once per process: ``main`` may be called again, e.g. by a test)."""
    names = {param.name for param in run.params}
    for name in registered():
        for option in get_experiment(name).run_options:
            if option.dest not in names:
                names.add(option.dest)
                run.params.append(click.Option(
                    [f"--{option.name}", option.dest], type=option.click_type(), default=None,
                    help=f"{option.help} ({name}; default: {option.default_text})"))
    for point in entry_points(group=COMMANDS_GROUP):
        if point.name not in cli.commands:
            cli.add_command(point.load(), point.name)
    run.help = inspect.cleandoc(run.help or "") + "\n\nDefault experiments: " \
        + ", ".join(default_run()) + "; all: " + ", ".join(registered()) + "."


def main() -> None:
    """Console entry point: a bad argument is one line on stderr and exit code 2."""
    _plug_in()
    try:
        code = cli.main(prog_name="seambench", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(exitcodes.INTERRUPTED)
    except click.ClickException as exc:
        usage = isinstance(exc, (click.UsageError, click.FileError))
        hint = " (see --help)" if isinstance(exc, click.UsageError) else ""
        click.echo(f"seambench: error: {exc.format_message()}{hint}", err=True)
        sys.exit(exitcodes.UNUSABLE if usage else exitcodes.TOOL_FAILED)
    except Exception:  # a bug or a broken environment: the whole story, then the table's 4
        traceback.print_exc()
        sys.exit(exitcodes.TOOL_FAILED)
    sys.exit(code if isinstance(code, int) else exitcodes.OK)


@cli.command()
@click.option("--topology", "topology", default="monolith", show_default=True, callback=topology_callback,
              help="a built-in topology (monolith, microservices, hybrid, monolith-pg, ...) or a path to a .toml")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep databases and logs here (default: a temporary directory, removed)")
@click.option("--trace", "trace_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, metavar="DIR",
              help="trace every server (OpenTelemetry): spans to DIR as OTLP JSON lines")
@click.option("--trace-ratio", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              show_default=True, help="with --trace: the share of requests traced")
@click.option("--otlp-url", callback=otlp_url_callback, default=None, metavar="URL",
              help="with --trace: also export the spans to this OTLP/HTTP traces endpoint")
@with_common_options
def up(topology: Topology, data_dir: Path | None, trace_dir: Path | None, trace_ratio: float,
       otlp_url: str | None, workers: int, threads: int, catalog_size: int, kdf_log2: int,
       hop_delay_ms: float, edge: str) -> None:
    """Start a topology, print its public base URL, and stop it all on Ctrl-C or SIGTERM.

    A server that dies is restarted on its port, with backoff, and said on stderr; one that
    does not come back after repeated restarts stops everything (exit 4; 130 on Ctrl-C)."""
    stop_on_signals()
    logging.basicConfig(level=logging.WARNING, format="seambench up: %(message)s")
    if otlp_url is not None and trace_dir is None:
        raise click.BadParameter("--otlp-url needs --trace DIR (spans are always kept there too)",
                                 param_hint="--otlp-url")
    trace = (TraceExport(trace_ratio, str(trace_dir.resolve()), otlp_url)
             if trace_dir is not None else None)
    settings = replace(launch_settings(workers, threads, catalog_size, kdf_log2, hop_delay_ms,
                                       edge), supervise=True, trace=trace)
    try:
        with launch(topology, settings, data_dir) as shop:
            click.echo(shop.base_url)
            click.echo(f"{topology.name}: {len(shop.processes)} process(es) up, supervised; "
                       f"Ctrl-C stops them", err=True)
            while not shop.dead():
                time.sleep(0.2)
            for proc in shop.dead():
                click.echo(proc.exit_report(), err=True)
            sys.exit(exitcodes.TOOL_FAILED)
    except LaunchError as exc:
        click.echo(f"seambench up: {exc}", err=True)
        sys.exit(exitcodes.TOOL_FAILED)
    except KeyboardInterrupt:  # everything it started is stopped by now: said, and 130
        click.echo("stopped", err=True)
        sys.exit(exitcodes.INTERRUPTED)


@cli.command()
@click.option("--profile", type=click.Choice(sorted(lifecycle.PROFILES)), default="quick",
              show_default=True,
              help="quick (~5 min on 2 cores), full (the long sweep), smoke (seconds, for tests)")
@click.option("--topology", "placements", multiple=True, default=["monolith", "microservices"],
              show_default=True, callback=topology_callback, help="placements to compare (repeatable; "
              "the first is the baseline of every ratio)")
@click.option("--ratio", "comparisons", multiple=True, metavar="A/B",
              help="a paired ratio of two placements besides each over the first (repeatable), "
                   "e.g. microservices-pg/microservices: what the database seam adds alone")
@click.option("--experiment", "experiments", multiple=True, default=None,
              help="experiments to run, in order (repeatable; default: those of the default "
                   "run, listed by --help below)")
@click.option("--set", "assignments", multiple=True, metavar="EXPERIMENT.FIELD=VALUE",
              help="override one setting of an experiment (repeatable), e.g. NAME.rate=20 or "
                   "NAME.FIELD=1,4,16; VALUE is JSON or a comma-separated list")
@click.option("--trials", type=click.IntRange(1, 100), default=None,
              help="repeated trials per step (default: the profile's)")
@click.option("--seed", type=click.IntRange(0, 2**31), default=1, show_default=True,
              help="seeds every arrival schedule and request mix")
@click.option("--arrival", type=click.Choice(["poisson", "constant"]), default="poisson",
              show_default=True, help="arrival process of every open-loop step that does "
                                      "not fix its own")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True, help="runs are written under this")
@click.option("--baseline-ref", metavar="GIT_REF", default=None,
              help="also run the shop of this git ref (HEAD~1, a tag, a merge base) as the "
                   "placements NAME@base, interleaved and paired by trial with this checkout's, "
                   "each NAME over NAME@base as a paired ratio; its worktree is removed after")
@click.option("--target", "targets", multiple=True, callback=target_callback, metavar="FILE.toml",
              help="a placement deployed elsewhere (compose, a cluster), measured over HTTP: "
                   "its public URL and each server's /metrics (repeatable; see docs/kubernetes.md). "
                   "With --target, no placement is started unless --topology names it")
@click.option("--generators", type=click.IntRange(0, 64), default=0, show_default=True,
              help="load every step from Locust's master and this many workers (0: one "
                   "generator process), each sending its slice of the one schedule")
@click.option("--trace", is_flag=True,
              help="also run each placement traced, as NAME-traced (OpenTelemetry spans to the "
                   "run's traces/ directory as OTLP JSON), paired by trial with NAME: the "
                   "report says what tracing costs and where each millisecond goes")
@click.option("--trace-ratio", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              show_default=True, help="with --trace: the share of requests traced")
@click.option("--otlp-url", callback=otlp_url_callback, default=None, metavar="URL",
              help="with --trace: also export the spans to this OTLP/HTTP traces endpoint "
                   "(e.g. http://127.0.0.1:4318/v1/traces)")
@with_common_options
def run(profile: str, placements: list[Topology], targets: list[Target], generators: int,
        trace: bool, trace_ratio: float, otlp_url: str | None, comparisons: tuple[str, ...],
        experiments: tuple[str, ...], assignments: tuple[str, ...], trials: int | None,
        seed: int, arrival: str, results: Path, baseline_ref: str | None, workers: int,
        threads: int, catalog_size: int, kdf_log2: int, hop_delay_ms: float, edge: str,
        **options: Any) -> None:
    """Measure the placements side by side and write results/<run-id>/ with its report.

    Each placement is started once; then trial by trial each experiment's rungs run in every
    placement back to back. Latencies are µs HDR histograms from each request's intended
    send time. Exit codes (seambench --help): 0 done; 1 done, and an experiment found the
    system wrong (money or notifications lost, created, duplicated or left unresolved under
    faults, say); 3 done, but a headline figure rests on no valid step; 4 failed (a process
    died, the generator or the report failed); 130 interrupted. An interrupted or failed run
    keeps what was measured, marked incomplete. The last line on stdout is the run directory.
    """
    stop_on_signals()
    if not trace and (otlp_url is not None or trace_ratio != 1.0):
        raise click.BadParameter("needs --trace (which runs each placement again, traced)",
                                 param_hint="--otlp-url" if otlp_url else "--trace-ratio")
    chosen = tuple(dict.fromkeys(experiments)) or default_run()
    unknown = [name for name in chosen if name not in registered()]
    if unknown:
        raise click.BadParameter(f"unknown experiment {unknown[0]!r}; known: "
                                 f"{', '.join(registered())}", param_hint="--experiment")
    if targets:
        placements, chosen = _against_targets(placements, targets, chosen, bool(experiments),
                                              baseline_ref)
    for name in chosen if generators else ():
        why = get_experiment(name).needs_one_generator
        if why:
            raise click.BadParameter(f"experiment {name!r} cannot take its load from "
                                     f"distributed generators: {why}", param_hint="--generators")
    overrides: dict[str, dict[str, Any]] = {}
    for name in chosen:  # the options experiments add to `run` (Experiment.run_options)
        for option in get_experiment(name).run_options:
            if options.get(option.dest) is not None:
                overrides.setdefault(name, {})[option.field] = options[option.dest]
    measure("run", profile, placements, comparisons, chosen, assignments, overrides, trials,
            seed, arrival, results,
            launch_settings(workers, threads, catalog_size, kdf_log2, hop_delay_ms, edge),
            baseline_ref, {t.name: t for t in targets}, generators,
            TraceRequest(trace_ratio, otlp_url) if trace else None)


def _against_targets(placements: list[Topology], targets: list[Target], chosen: tuple[str, ...],
                     asked: bool, baseline_ref: str | None
                     ) -> tuple[list[Topology], tuple[str, ...]]:
    """The placements (the started ones, only if --topology named them, then the targets) and
    the experiments that can measure a target: asked-for ones that cannot are refused; of
    the default run, those are left out with a note on stderr. Raises click.BadParameter."""
    if baseline_ref is not None:
        raise click.BadParameter("a target runs the code it was deployed with: compare "
                                 "another ref by deploying it as a target of its own",
                                 param_hint="--baseline-ref")
    source = click.get_current_context().get_parameter_source("placements")
    started = [] if source == click.core.ParameterSource.DEFAULT else placements
    names = [t.name for t in started] + [t.name for t in targets]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise click.BadParameter(f"two placements are named {clash[0]!r} (a target's name is "
                                 f"the file's name = ..., else its stem)", param_hint="--target")
    unable = {name: why for name in chosen if (why := get_experiment(name).needs_own_processes)}
    if unable and asked:
        name = next(iter(unable))
        raise click.BadParameter(f"experiment {name!r} is not available against a target: "
                                 f"{unable[name]}", param_hint="--experiment")
    for name, why in unable.items():
        click.echo(f"seambench: not run against a target: {name} ({why})", err=True)
    left = tuple(name for name in chosen if name not in unable)
    if not left:
        raise click.BadParameter("no experiment of the default run can measure a target; "
                                 "name one with --experiment", param_hint="--target")
    return [*started, *(t.topology for t in targets)], left


def measure(command: str, profile: str, placements: list[Topology],
            comparisons: tuple[str, ...], chosen: tuple[str, ...], assignments: tuple[str, ...],
            overrides: dict[str, dict[str, Any]], trials: int | None, seed: int, arrival: str,
            results: Path, launch: LaunchSettings, baseline_ref: str | None = None,
            targets: dict[str, Target] | None = None, generators: int = 0,
            trace: TraceRequest | None = None) -> NoReturn:
    """What ``seambench run`` (and a command an experiment adds) does once its options are
    read: build the config, execute it, say how it went, and exit with the run's code.
    ``baseline_ref``: a git ref whose shop runs beside, as each placement NAME@base."""
    for name, fields in _assignments(assignments, chosen).items():
        overrides.setdefault(name, {}).update(fields)
    asked = _comparisons(comparisons, [t.name for t in placements])
    with ExitStack() as stack:
        sources: dict[str, ShopSource] = {}
        if baseline_ref is not None:
            placements, asked, sources = _with_baseline(stack, baseline_ref, placements, asked)
        run_id = new_run_id()
        traced: dict[str, TraceExport] = {}
        if trace is not None:
            if targets:
                raise click.BadParameter("a target traces as it was deployed: set "
                                         "SEAMBENCH_TRACE_RATIO in its servers' environment",
                                         param_hint="--trace")
            placements, asked, traced = _with_traced(placements, asked, trace,
                                                     results / run_id / TRACES_DIR)
            # a NAME@base twin runs the base's code, as NAME@base does
            sources.update({lifecycle.traced_name(name): source
                            for name, source in list(sources.items())})
        try:
            config = lifecycle.RunConfig.build(
                profile, placements, launch,
                lifecycle.cpu_plan(), chosen, trials, overrides, seed=seed, arrival=arrival,
                comparisons=asked, sources=sources, targets=targets or {},
                generators=generators, traced=traced)
        except (TypeError, ValueError) as exc:  # a --set the experiment's settings refuse
            raise click.BadParameter(str(exc).splitlines()[0], param_hint="--set") from None
        console = RunConsole(results / run_id, len(lifecycle.plan_steps(config)))
        with console:
            outcome = lifecycle.execute(config, results, console.progress(), run_id)
    _conclude(command, outcome, console)


def _with_baseline(stack: ExitStack, ref: str, placements: list[Topology],
                   asked: tuple[tuple[str, str], ...]
                   ) -> tuple[list[Topology], tuple[tuple[str, str], ...], dict[str, ShopSource]]:
    """The placements with each one's NAME@base from ``ref`` after them, each NAME over
    NAME@base among the ratios, and where the NAME@base code is (checked out into a worktree
    that ``stack`` removes). Raises click.BadParameter for a ref that cannot be run."""
    names = {t.name for t in placements}
    clash = [t.name for t in placements if base_name(t.name) in names]
    if clash:
        raise click.BadParameter(f"a placement is already named {base_name(clash[0])!r}",
                                 param_hint="--baseline-ref")
    try:
        source = stack.enter_context(checked_out(
            ref, say=lambda text: click.echo(f"seambench: {text}", err=True)))
    except RefError as exc:
        raise click.BadParameter(str(exc).splitlines()[0], param_hint="--baseline-ref") from None
    click.echo(f"seambench: baseline {source.describe()}", err=True)
    bases = [replace(t, name=base_name(t.name)) for t in placements]
    pairs = tuple((t.name, b.name) for t, b in zip(placements, bases))
    return ([*placements, *bases], tuple(dict.fromkeys(asked + pairs)),
            {b.name: source for b in bases})


@dataclass(frozen=True)
class TraceRequest:
    """``--trace``: the share of requests traced and where else spans go (OTLP/HTTP)."""

    ratio: float = 1.0
    otlp_url: str | None = None


def _with_traced(placements: list[Topology], asked: tuple[tuple[str, str], ...],
                 trace: TraceRequest, traces: Path
                 ) -> tuple[list[Topology], tuple[tuple[str, str], ...], dict[str, TraceExport]]:
    """Each placement's twin NAME-traced after it, NAME-traced over NAME among the ratios
    (tracing's cost, paired by trial), and how each twin traces: into traces/NAME-traced."""
    names = {t.name for t in placements}
    twins = [replace(t, name=lifecycle.traced_name(t.name)) for t in placements]
    clash = [t.name for t in twins if t.name in names]
    if clash:
        raise click.BadParameter(f"a placement is already named {clash[0]!r}", param_hint="--trace")
    pairs = tuple((twin.name, t.name) for t, twin in zip(placements, twins))
    exports = {twin.name: TraceExport(trace.ratio, str((traces / twin.name).resolve()),
                                      trace.otlp_url) for twin in twins}
    return [*placements, *twins], tuple(dict.fromkeys(asked + pairs)), exports


def _conclude(command: str, outcome: lifecycle.Outcome, console: RunConsole) -> NoReturn:
    """Say how the run went, print the run directory as stdout's last line (complete or
    not) and exit with its code."""
    if outcome.reason == "interrupted":
        click.echo(f"seambench {command}: interrupted; keeping what was measured (incomplete)",
                   err=True)
    elif not outcome.complete:
        click.echo(f"seambench {command}: {outcome.reason} (logs under {outcome.run_dir / 'logs'})",
                   err=True)
    if outcome.summary is None:
        click.echo(f"seambench {command}: the report failed ({outcome.report_error}); rebuild it "
                   f"with: seambench report {outcome.run_dir}", err=True)
    else:
        console.headline(outcome.summary)
    click.echo(outcome.run_dir)  # the last line on stdout, for scripts: no `ls -td results/*/`
    sys.exit(outcome.exit_code)


def _assignments(asked: tuple[str, ...], experiments: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--set EXPERIMENT.FIELD=VALUE`` options as experiment -> field -> value. VALUE is read
    as JSON (1, 0.5, true, [1, 4], {"slow_p": 0.01}), else as a comma-separated list of
    JSON values when it has a comma, else as text. Raises click.BadParameter."""
    out: dict[str, dict[str, Any]] = {}
    for text in asked:
        target, eq, raw = text.partition("=")
        name, dot, key = target.partition(".")
        if not eq or not dot or not key:
            raise click.BadParameter(f"{text!r} is not EXPERIMENT.FIELD=VALUE", param_hint="--set")
        if name not in experiments:
            raise click.BadParameter(f"{text!r}: {name!r} is not an experiment of this run "
                                     f"({', '.join(experiments)})", param_hint="--set")
        known = {f.name for f in fields(type(get_experiment(name).settings("quick")))}
        if key not in known:
            raise click.BadParameter(f"{text!r}: {name} has no setting {key!r}; known: "
                                     f"{', '.join(sorted(known))}", param_hint="--set")
        out.setdefault(name, {})[key] = _value(raw)
    return out


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        pass
    if "," in raw:
        return [_value(part.strip()) for part in raw.split(",")]
    return raw


def _comparisons(asked: tuple[str, ...], names: list[str]) -> tuple[tuple[str, str], ...]:
    """``A/B`` options as (A, B) pairs of placements of this run. Raises click.BadParameter."""
    pairs = []
    for text in asked:
        a, slash, b = text.partition("/")
        if not slash or a not in names or b not in names or a == b:
            raise click.BadParameter(f"{text!r} must be A/B with two different placements of this "
                                     f"run ({', '.join(names)})", param_hint="--ratio")
        pairs.append((a, b))
    return tuple(pairs)


def _http_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "https":
        raise click.BadParameter(f"{value!r}: https is not supported (the generator measures "
                                 f"plain HTTP/1.1; load an http:// address)")
    if parts.scheme != "http" or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not an http:// URL")
    return value


def _headers(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    """``--header 'Name: value'`` options as a dict. Raises click.BadParameter."""
    headers = {}
    for text in value:
        name, colon, content = text.partition(":")
        if not colon or not HEADER_NAME.fullmatch(name) or any(c in text for c in "\r\n"):
            raise click.BadParameter(f"{text!r} is not 'Name: value'")
        headers[name] = content.strip()
    return headers


def _json_body(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None


@cli.command()
@click.argument("url", callback=_http_url)
@click.option("--rate", type=finite_range(0.1, MAX_RATE), required=True,
              help="arrivals per second (open loop)")
@click.option("--duration", type=finite_range(0.1, 86_400, duration=True), required=True,
              help="how long to measure: 30s, 2m, 1h (a bare number is seconds)")
@click.option("--warmup", type=finite_range(0, 3_600, duration=True), default="1s",
              show_default=True, help="sent first and not recorded (a bare number is seconds)")
@click.option("--method", type=click.Choice(METHODS, case_sensitive=False), default="GET",
              show_default=True, help="HTTP method")
@click.option("--header", "headers", multiple=True, callback=_headers,
              help="'Name: value', sent with every request (repeatable)")
@click.option("--body", default=None, help="the request body, sent as given")
@click.option("--json-body", default=None, callback=_json_body,
              help="a JSON request body (sent with Content-Type: application/json)")
@click.option("--arrival", type=click.Choice(["constant", "poisson"]), default="poisson",
              show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**31), default=1, show_default=True)
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="generator processes (each gets rate/processes; histograms are added)")
@click.option("--generators", type=click.IntRange(1, 64), default=None,
              help="Locust's master and this many workers, each sending a slice of the one "
                   "schedule, their histograms added (not with --processes)")
@click.option("--remote-generators", type=click.IntRange(0, 64), default=0,
              help="of --generators, how many join from other machines, each started there "
                   "with `seambench generator --master-host THIS_HOST --master-port PORT`")
@click.option("--master-bind-host", default=None,
              help="where the Locust master listens (default 127.0.0.1; 0.0.0.0 for workers "
                   "on other machines)")
@click.option("--master-port", type=click.IntRange(1, 65_535), default=None,
              help=f"the Locust master's port (default: any free one; {MASTER_PORT} with "
                   f"--remote-generators)")
@click.option("--connections", type=click.IntRange(1, 10_000), default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of a table")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep the generators' files (plans, interval logs) in this directory")
def load(url: str, rate: float, duration: float, warmup: float, method: str,
         headers: dict[str, str], body: str | None, json_body: Any, arrival: str, seed: int,
         processes: int, generators: int | None, remote_generators: int,
         master_bind_host: str | None, master_port: int | None, connections: int,
         as_json: bool, keep: Path | None) -> None:
    """Open-loop load on any URL, like wrk2: latency from each request's intended send time.

    Prints p50/p90/p99/p99.9/max in µs and the achieved rate; exit 3 if the run is invalid
    (the rate was missed by more than 2% or the generator saturated)."""
    if body is not None and json_body is not None:
        raise click.BadParameter("give --body or --json-body, not both", param_hint="--body")
    layout = _distributed(generators, remote_generators, processes, master_bind_host, master_port)
    stop_on_signals()
    parts = urlsplit(url)
    host = f"{parts.scheme}://{parts.netloc}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    with tempfile.TemporaryDirectory(prefix="seambench-load-") as scratch:
        out = keep or Path(scratch)
        plan = LoadPlan(rate_per_s=rate, duration_s=duration, warmup_s=warmup, arrival=arrival,
                        seed=seed, connections=connections, output_dir=str(out),
                        options={"path": path, "method": method.upper(), "headers": headers,
                                 "body": body, "json": json_body})
        try:
            result = run_load(TARGET, host, plan, processes, generators=layout or 0)
        except LoadError as exc:
            click.echo(f"seambench load: {exc}", err=True)
            sys.exit(exitcodes.TOOL_FAILED)
    summary = target_summary(result)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{summary['requests']} requests to {url}, {summary['errors']} errors, "
                   f"achieved {summary['achieved_rate']:.1f}/s of {rate:g}/s")
        for q in QUANTILES:
            click.echo(f"  {q.key:>6} {summary[summary_key(q)]:>10,} us")
        click.echo(f"  {'max':>6} {summary['max_us']:>10,} us")
        for reason in result.invalid_reasons:
            click.echo(f"  INVALID: {reason}", err=True)
    if not result.valid:
        sys.exit(exitcodes.NOTHING_VALID)


def _distributed(generators: int | None, remote: int, processes: int, bind_host: str | None,
                 port: int | None) -> Distributed | None:
    """``load``'s distributed options as a layout (None without --generators); says on stderr
    what to start on the other machines. Raises click.BadParameter."""
    if generators is None:
        if remote or bind_host is not None or port is not None:
            raise click.BadParameter("needs --generators", param_hint="--remote-generators, "
                                     "--master-bind-host or --master-port")
        return None
    if processes > 1:
        raise click.BadParameter("give --processes or --generators, not both",
                                 param_hint="--generators")
    try:
        layout = Distributed(generators, remote, bind_host or "127.0.0.1",
                             port or (MASTER_PORT if remote else 0))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--remote-generators") from None
    if remote:
        click.echo(f"seambench load: waiting for {remote} generator(s): on each other machine, "
                   f"`seambench generator --master-host <this machine> --master-port "
                   f"{layout.port}` (the master listens on {layout.bind_host})", err=True)
    return layout


@cli.command()
@click.option("--master-host", required=True, help="the machine running `seambench load --generators`")
@click.option("--master-port", type=click.IntRange(1, 65_535), default=MASTER_PORT,
              show_default=True)
def generator(master_host: str, master_port: int) -> None:
    """One load generator of a distributed run, on this machine: a Locust worker of the
    master at MASTER_HOST:MASTER_PORT, from which it gets the scenario and its slice of the
    schedule, and to which it sends its results. Exits when the master ends the run."""
    stop_on_signals()
    if run_worker(master_host, master_port, child_env(), GENERATOR_NICENESS) != 0:
        sys.exit(exitcodes.TOOL_FAILED)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def list_command(as_json: bool) -> None:
    """Every experiment with its settings and their defaults per profile, the built-in
    topologies, fault plans and budget figures."""
    from bench.listing import catalog, render
    doc = catalog()
    click.echo(json.dumps(doc, indent=1) if as_json else render(doc), nl=as_json)


@cli.command()
@click.option("--duration", type=finite_range(1, 600, duration=True), default="5s",
              show_default=True, help="per measurement: 5s, 1m (a bare number is seconds)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def calibrate(duration: float, as_json: bool) -> None:
    """How fast one generator process goes, against wrk on the same endpoint and core.

    A benchmark, not a test: it loads a minimal endpoint on loopback for about a minute."""
    stop_on_signals()
    plan = lifecycle.cpu_plan()
    try:
        result = run_calibration(plan, LaunchSettings(), duration)
    except CalibrationError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"wrk_rate": result.wrk_rate, "generator_rate": result.generator_rate,
                               "ratio": round(result.ratio, 3), "cpus": plan.note,
                               "steps": result.steps}))
        return
    click.echo(plan.note)
    click.echo(f"wrk (1 thread, 32 connections, closed loop): {result.wrk_rate:,.0f} req/s")
    for step in result.steps:
        verdict = "ok" if step["valid"] else "INVALID: " + "; ".join(step["invalid_reasons"])
        click.echo(f"  generator at {step['rate']:>7,} req/s: achieved {step['achieved_rate']:>9,.1f}, "
                   f"cpu {step['generator_cpu']:.0%}, p99 {step['p99_us']:,} us, {verdict}")
    click.echo(f"highest valid generator rate: {result.generator_rate:,.0f} req/s = "
               f"{result.ratio:.0%} of wrk")


def _run_dir(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """A results directory of ``seambench run`` (it has a readable manifest.json)."""
    try:
        manifest = read_json(value / MANIFEST)
    except FileNotFoundError:
        raise click.BadParameter(f"{value} is not a seambench run (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{value / MANIFEST} is unreadable: {exc}") from None
    if not isinstance(manifest, dict):
        raise click.BadParameter(f"{value / MANIFEST} is not a run manifest")
    return value


run_dir_argument = click.Path(exists=True, file_okay=False, path_type=Path)


@cli.command("report")
@click.argument("run_dir", metavar="DIR", type=run_dir_argument, callback=_run_dir)
def report_command(run_dir: Path) -> None:
    """Rebuild DIR's summary.json, figures and report.md/report.html from its raw files
    (complete or not), and print the path of report.html."""
    build_report(run_dir)
    click.echo(run_dir / REPORT_HTML)


def _run_dirs(ctx: click.Context, param: click.Parameter, value: tuple[Path, ...]) -> tuple[Path, ...]:
    return tuple(_run_dir(ctx, param, v) for v in value)


@cli.command("compare")
@click.argument("runs", metavar="DIR_A [DIR_B]", nargs=-1, required=True,
                type=run_dir_argument, callback=_run_dirs)
@click.option("--against", "against", multiple=True, type=run_dir_argument, callback=_run_dirs,
              help="side B's runs (repeatable); then every DIR is a run of side A")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the comparison as Markdown to this file")
def compare_command(runs: tuple[Path, ...], against: tuple[Path, ...], output: Path | None) -> None:
    """Headline figures of two runs (DIR_A DIR_B), or of several runs a side (DIR_A ...
    --against DIR_B --against ...), side by side with the change B/A and a test that counts
    run-to-run variance, Holm-adjusted over the figures. Reads summary.json (computed in
    memory when missing); writes nothing unless --output is given. Runs that measured
    different things are compared where they overlap, with a warning line."""
    if against:
        side_a, side_b = runs, against
    elif len(runs) == 2:
        side_a, side_b = runs[:1], runs[1:]
    else:
        raise click.BadParameter("give two runs, or side A's runs and --against for each of "
                                 "side B's", param_hint="DIR_A [DIR_B]")
    comparison = compare([load_summary(r) for r in side_a], [load_summary(r) for r in side_b])
    click.echo(render_text(comparison), nl=False)
    if output is not None:
        write_text_atomic(output, render_markdown(comparison))
        click.echo(f"written: {output}", err=True)


def _optional_run_dir(ctx: click.Context, param: click.Parameter,
                     value: Path | None) -> Path | None:
    return None if value is None else _run_dir(ctx, param, value)


@cli.command("check")
@click.argument("run_dir", metavar="RUN", type=run_dir_argument, callback=_run_dir)
@click.option("--budgets", "budgets_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="the budgets file (TOML)")
@click.option("--baseline", "baseline_dir", type=run_dir_argument, callback=_optional_run_dir,
              default=None, help="a run to test growth limits against")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write JUnit XML here (one testcase per budget)")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the Markdown summary here too (e.g. for a pull-request comment)")
@click.option("--allow-incomplete", is_flag=True, help="check an incomplete run (or baseline)")
@click.option("--allow-invalid", is_flag=True,
              help="evaluate budgets resting on invalid steps on their valid trials")
@click.option("--allow-env-mismatch", is_flag=True,
              help="compare with a baseline from another CPU, core count or configuration")
@click.option("--strict", is_flag=True,
              help="noisy and missing verdicts fail too (exit 3 when nothing was breached)")
def check_command(run_dir: Path, budgets_path: Path, baseline_dir: Path | None,
                  junit: Path | None, markdown: Path | None, allow_incomplete: bool,
                  allow_invalid: bool, allow_env_mismatch: bool, strict: bool) -> None:
    """Check RUN against a budgets file: a table of budget, measured value with its 95%
    interval, limit and verdict (pass, breach, noisy, missing); JUnit XML with --junit; a
    Markdown summary appended to $GITHUB_STEP_SUMMARY when set. A ceiling is breached only
    when its whole interval is over it. Exit codes: 0 no breach (noisy and missing do not
    fail unless --strict); 1 a breach; 3 with --strict, no breach but a noisy or missing
    figure (undecided: measure more); 2 unusable input (a malformed budgets file, an
    incomplete run, an invalid step under a budget, a baseline from another environment),
    each refused unless its --allow-* flag is given."""
    from bench.budgets.command import run_check
    from bench.budgets.evaluate import Allowances
    code = run_check(run_dir, budgets_path, baseline_dir, junit, markdown,
                     Allowances(allow_incomplete, allow_invalid, allow_env_mismatch), strict,
                     lambda text: click.echo(text, nl=False), lambda text: click.echo(text, err=True))
    sys.exit(code)


# A topology deployed by containers or Kubernetes (bench/deploy/): `deploy` writes the
# files, `serve` is each container's entry point.
from bench.deploy.command import deploy, serve_command  # noqa: E402

cli.add_command(deploy)
cli.add_command(serve_command)

# What a topology nobody has built would cost, from a run (bench/experiments/predict/).
from bench.experiments.predict.command import predict_command  # noqa: E402

cli.add_command(predict_command)
