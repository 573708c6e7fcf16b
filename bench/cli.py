"""The ``seambench`` command."""
from __future__ import annotations

import json
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import click

from bench.fingerprint import fingerprint
from bench.launcher import LaunchError, LaunchSettings, launch
from bench.probe import CheckoutProbe
from shop.placement import Topology, TopologyError, load_topology
from shop.search.service import SearchSettings


def _topology(ctx: click.Context, param: click.Parameter,
              value: str | tuple[str, ...]) -> Topology | list[Topology]:
    """Load ``--topology`` (one, or each of a repeated option, duplicates dropped)."""
    try:
        if isinstance(value, tuple):
            return [load_topology(name) for name in dict.fromkeys(value)]
        return load_topology(value)
    except TopologyError as exc:
        raise click.BadParameter(str(exc)) from None


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP all stop what we started. SIGINT is set explicitly because
    a shell starts background jobs with it ignored, and Python then installs no handler."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)


def _settings(workers: int, threads: int, catalog_size: int, kdf_log2: int) -> LaunchSettings:
    return replace(LaunchSettings(), workers=workers, threads=threads, scrypt_n=2**kdf_log2,
                   search=replace(SearchSettings(), catalog_size=catalog_size))


common_options = [
    click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
                 help="gunicorn worker processes per process"),
    click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True,
                 help="gthread threads per worker"),
    click.option("--catalog-size", type=click.IntRange(10, 1_000_000), default=10_000,
                 show_default=True, help="products in the seeded catalog"),
    click.option("--kdf-log2", type=click.IntRange(1, 20), default=14, show_default=True,
                 help="scrypt cost: N = 2**this"),
]


def with_common_options(fn):
    for option in reversed(common_options):
        fn = option(fn)
    return fn


@click.group()
def cli() -> None:
    """seambench: what does a seam cost? One shop, measured as a monolith and as microservices."""


def main() -> None:
    """Console entry point: a bad argument is one line on stderr and exit code 2."""
    try:
        cli.main(prog_name="seambench", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        hint = " (see --help)" if isinstance(exc, click.UsageError) else ""
        click.echo(f"seambench: error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)


@cli.command()
@click.option("--topology", "topology", default="monolith", show_default=True, callback=_topology,
              help="monolith, microservices, hybrid, or a path to a topology .toml")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="keep databases and logs here (default: a temporary directory, removed)")
@with_common_options
def up(topology: Topology, data_dir: Path | None, workers: int, threads: int,
       catalog_size: int, kdf_log2: int) -> None:
    """Start a topology, print its public base URL, and stop it all on Ctrl-C or SIGTERM."""
    _stop_on_signals()
    settings = _settings(workers, threads, catalog_size, kdf_log2)
    try:
        with launch(topology, settings, data_dir) as shop:
            click.echo(shop.base_url)
            click.echo(f"{topology.name}: {len(shop.processes)} process(es) up; Ctrl-C stops them",
                       err=True)
            while not shop.dead():
                time.sleep(0.2)
            for proc in shop.dead():
                click.echo(proc.exit_report(), err=True)
            sys.exit(1)
    except LaunchError as exc:
        click.echo(f"seambench up: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


@cli.command()
@click.option("--topology", "placements", multiple=True, default=["monolith", "microservices"],
              show_default=True, callback=_topology, help="placements to measure (repeatable)")
@click.option("--checkouts", type=click.IntRange(10, 100_000), default=400, show_default=True,
              help="timed checkouts per placement")
@click.option("--rounds", type=click.IntRange(1, 100), default=4, show_default=True,
              help="interleaved blocks per placement (A B A B ...)")
@click.option("--warmup", type=click.IntRange(0, 10_000), default=50, show_default=True,
              help="untimed checkouts per placement before the first block")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True)
@with_common_options
def run(placements: list[Topology], checkouts: int, rounds: int, warmup: int, results: Path,
        workers: int, threads: int, catalog_size: int, kdf_log2: int) -> None:
    """Measure each placement: for now, the sequential checkout probe (one client, unloaded).

    Every placement is started first; then blocks of checkouts alternate between them, so
    drift in the machine hits all alike. The full load harness is not built yet.
    """
    _stop_on_signals()
    settings = _settings(workers, threads, catalog_size, kdf_log2)
    run_dir = results / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"command": "probe", "started_at": time.time(), "complete": False,
                "config": {"topologies": [t.name for t in placements], "checkouts": checkouts,
                           "rounds": rounds, "warmup": warmup, "workers": workers,
                           "threads": threads, "catalog_size": catalog_size,
                           "kdf_log2": kdf_log2},
                "environment": fingerprint()}
    probes: list[CheckoutProbe] = []
    try:
        with ExitStack() as stack:
            for topology in placements:
                click.echo(f"starting {topology.name}", err=True)
                shop = stack.enter_context(launch(topology, settings))
                probe = CheckoutProbe(shop.base_url, topology.name)
                stack.callback(probe.close)
                probe.measure(0, warmup)
                probes.append(probe)
            for block in range(rounds):
                size = checkouts // rounds + (block < checkouts % rounds)
                for probe in probes:
                    probe.measure(size)
                click.echo(f"round {block + 1}/{rounds} done", err=True)
        manifest["complete"] = True
    except LaunchError as exc:
        click.echo(f"seambench run: {exc}", err=True)
        sys.exit(1)
    finally:
        manifest["ended_at"] = time.time()
        manifest["results"] = [p.result.summary() for p in probes if p.result.samples_us]
        write_json(run_dir / "probe.json", manifest)
    click.echo(f"{'placement':<16}{'checkouts':>10}{'p50 µs':>10}{'p90 µs':>10}{'p99 µs':>10}")
    for s in manifest["results"]:
        click.echo(f"{s['placement']:<16}{s['checkouts']:>10}{s['p50_us']:>10}{s['p90_us']:>10}"
                   f"{s['p99_us']:>10}")
    if len(manifest["results"]) > 1:
        base = manifest["results"][0]
        for s in manifest["results"][1:]:
            click.echo(f"p50 {s['placement']}/{base['placement']}: "
                       f"{s['p50_us'] / base['p50_us']:.2f}x")
    click.echo(f"results: {run_dir / 'probe.json'}")


def write_json(path: Path, data: object) -> None:
    """Write atomically: a reader never sees half a file, an interrupted run keeps the old."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
